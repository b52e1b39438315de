"""memsr-bench: benchmarking and memory analysis for efficient single-image super-resolution.

Public entry points of the evaluation pipeline::

    from memsr_bench import imresize, psnr, ssim, rgb_to_y
"""

from memsr_bench.color import rgb_to_y
from memsr_bench.data.matlab_resize import imresize
from memsr_bench.metrics import psnr, psnr_ssim, ssim

__version__ = "0.1.0"

__all__ = ["__version__", "imresize", "psnr", "psnr_ssim", "rgb_to_y", "ssim"]
