"""What the documentation is generated from: results tables and the front-page picture.

``python -m pipeline.docs.tables`` rewrites the results tables of README.md and docs/*.md from
the committed metrics snapshots; ``python -m pipeline.docs.figure`` builds the picture from the
overlays ``fusioner-evaluate`` writes. Neither is a DVC stage: both read committed or finished
outputs and write files that are committed.
"""
