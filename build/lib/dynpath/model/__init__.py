"""The dynamic-pathway model (paper Sec. III): layers, encoders, modules, selection, heads, loss,
and the registry of the ablation variants (Tables III/IV)."""

from dynpath.model.loss import localization_loss
from dynpath.model.network import DynamicPathwayModel, VariantSpec
from dynpath.model.output import NO_ROUTE, ROUTE_NAMES, ModelOutput
from dynpath.model.registry import VARIANTS, build_model, model_info, variant_metadata

__all__ = [
    "NO_ROUTE",
    "ROUTE_NAMES",
    "VARIANTS",
    "DynamicPathwayModel",
    "ModelOutput",
    "VariantSpec",
    "build_model",
    "localization_loss",
    "model_info",
    "variant_metadata",
]
