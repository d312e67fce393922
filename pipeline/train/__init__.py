"""Training the fusion module from cached stores: episodes, loop, resumable checkpoints."""

from pipeline.train.config import FitConfig
from pipeline.train.episodes import EpisodeDataset, collate_episodes, episode_text
from pipeline.train.inputs import TrainingInputs, open_inputs
from pipeline.train.trainer import fit

__all__ = [
    "EpisodeDataset",
    "FitConfig",
    "TrainingInputs",
    "collate_episodes",
    "episode_text",
    "fit",
    "open_inputs",
]
