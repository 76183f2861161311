"""Models: timm encoders (random init) and tinyconv, heads, losses, checkpoints, the transfer classifier, and
the pretext models of unmix, dino and swav."""

from .checkpoint import load_encoder, save_encoder  # noqa: F401
from .classifier import Classifier  # noqa: F401
from .encoders import Encoder, create_encoder, list_archs  # noqa: F401
from .heads import (  # noqa: F401
    ClassifierHead,
    CosineSimilarityHead,
    DotProductHead,
    MLPHead,
    inverse_sigmoid,
    projection_head,
)
from .losses import contrastive_loss, nt_xent_loss  # noqa: F401
