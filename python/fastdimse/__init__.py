"""fastdimse"""
from fastdimse._core import __version__
