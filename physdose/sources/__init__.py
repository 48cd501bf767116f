"""X-ray sources. Each reduces to one `Beam` that the Monte Carlo and the prior both read."""

from ._beam import Beam as Beam, Bowtie as Bowtie, PhotonBatch as PhotonBatch
from ._carm import CArm as CArm
from ._ct import CTScan as CTScan
from ._simple import ConeBeam as ConeBeam, FanBeam as FanBeam, ParallelBeam as ParallelBeam, PencilBeam as PencilBeam
from ._source import AbstractSource as AbstractSource
