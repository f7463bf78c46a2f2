from .guidance import guide, guided
from .losses import diffusion_loss
from .sampling import dynamic_threshold, sample_ancestral, sample_with_scheduler
from .schedule import Schedule, cosine_betas, predicted_x0, training_target

__all__ = ["Schedule", "cosine_betas", "predicted_x0", "training_target", "dynamic_threshold", "sample_ancestral",
           "sample_with_scheduler", "guide", "guided", "diffusion_loss"]
