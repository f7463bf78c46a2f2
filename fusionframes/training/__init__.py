from .config import STAGES, RunConfig, load_config
from .loop import train
from .tasks import TASKS

__all__ = ["STAGES", "RunConfig", "load_config", "train", "TASKS"]
