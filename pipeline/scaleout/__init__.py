"""Scale-out on existing engines: extraction as a dask.distributed job, fitting with torch DDP."""
