"""OpenMP facts for the Python layer (compiled-in or not, runtime maximum)."""
from nndl_fast._openmp_helpers cimport NNDL_OPENMP_ENABLED, omp_get_max_threads


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(NNDL_OPENMP_ENABLED)


def openmp_max_threads():
    """omp_get_max_threads() of the runtime (1 without OpenMP)."""
    return omp_get_max_threads()
