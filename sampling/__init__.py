"""The sampling stage: seeds -> latents -> images -> landmarks -> ``samples.h5``."""
