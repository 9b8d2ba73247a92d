# The only place that touches the OpenMP runtime directly.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define NNDL_OPENMP_ENABLED 1
    #else
    #define NNDL_OPENMP_ENABLED 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    static int omp_get_num_threads(void) { return 1; }
    #endif
    """
    bint NNDL_OPENMP_ENABLED
    int omp_get_max_threads() nogil
    int omp_get_thread_num() nogil
    int omp_get_num_threads() nogil
