"""Photon Monte Carlo: Woodcock tracking in voxel phantoms, the ground truth of physdose."""

from ._bias import ScatterSplitting as ScatterSplitting
from ._interactions import sample_coherent as sample_coherent, sample_incoherent as sample_incoherent
from ._scorers import DiskScorer as DiskScorer
from ._simulate import MCResult as MCResult, replicate as replicate, simulate as simulate
