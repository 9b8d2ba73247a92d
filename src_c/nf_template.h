/* The names every kernel template (a header included once per instruction set
 * and dtype, with NF_DOUBLE, NF_SUF and NF_VBYTES defined) works with: its
 * scalar type, its functions' names and the lanes of a vector. The template
 * undefines them at its end. */
#if NF_DOUBLE
#define NF_T double
#else
#define NF_T float
#endif
#define NF_FN(name) NF_CAT3(name, _, NF_SUF)
#define NF_VL (NF_VBYTES / (int)sizeof(NF_T))   /* lanes per vector */
