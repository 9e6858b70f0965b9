"""Equivariant networks usable as policy, critic and score networks.

Modules: `egnn` (EGNN), `emnn` (mesh EGNN) and `mesh_pooling`, `emlp` (equivariant linear layers from generators),
`canonicalization` (frames, sorting, learned canonicalizers), `relaxed` (relaxed equivariance), `weight_sharing`
(the weight-sharing regulariser and its exact prox), `scene` (typed-entity scenes: their layout, EGNN and an
equivariant squashed Gaussian), `cspnet` (CSPNet, the periodic E(3)-invariant crystal denoiser of DiffCSP and SymmCD).
Plain torch only: the SB3 extractors and policies built on it are `agents.equivariant`.
"""

from equivariant.canonicalization import Canonicalizer, EGNNCanonicalizer, GroupElement, sort_canonicalize
from equivariant.cspnet import CSPNet, CSPNetConfig, CSPNetOutput
from equivariant.egnn import EGNN, EGNNLayer, EGNNScore
from equivariant.emlp import EMLP, EquivariantLinear, GatedNonlinearity, Representation
from equivariant.emnn import EMNN, EMNNLayer
from equivariant.mesh_pooling import HierarchicalEMNN
from equivariant.relaxed import CanonicalizedNetwork, SymmetryBreakingInput
from equivariant.weight_sharing import ProxGradient, weight_sharing_penalty, weight_sharing_prox

__all__ = [
    "EGNN", "EMLP", "EMNN", "CSPNet", "CSPNetConfig", "CSPNetOutput", "CanonicalizedNetwork", "Canonicalizer",
    "EGNNCanonicalizer", "EGNNLayer", "EGNNScore", "EMNNLayer", "EquivariantLinear", "GatedNonlinearity", "GroupElement",
    "HierarchicalEMNN", "ProxGradient", "Representation", "SymmetryBreakingInput", "sort_canonicalize",
    "weight_sharing_penalty", "weight_sharing_prox",
]  # fmt: skip
