"""Models: timm encoders (random init) and tinyconv, heads, losses, checkpoints, the transfer classifier."""

from .encoders import Encoder, create_encoder, list_archs  # noqa: F401
from .heads import (  # noqa: F401
    ClassifierHead,
    CosineSimilarityHead,
    DotProductHead,
    MLPHead,
    ProjectionHead,
    inverse_sigmoid,
)
