package blas

// Info describes the OpenBLAS library a binary runs with, for reports.
type Info struct {
	// Linked is false in builds without OpenBLAS (CGO_ENABLED=0 or -tags purego).
	Linked bool
	// Config is openblas_get_config(): version and build options.
	Config string
	// CoreName is openblas_get_corename(): the kernel set in use, such as
	// "SkylakeX" or "Haswell" (OPENBLAS_CORETYPE overrides OpenBLAS's choice).
	CoreName string
	// Threads is openblas_get_num_threads() as set by this package.
	Threads int
	// RowPass names the C softmax row pass of the backend's variant:
	// "avx512", "avx2" or "scalar".
	RowPass string
	// Kernel names what runs a layer's products: "xattn-avx512", the
	// backend's own AVX-512 kernel, for the projections against packed
	// weights and the attention tiles, else "openblas".
	Kernel string
	// Variant is the backend's variant as [OpenBLASVariant] reads it,
	// "rows=avx512,gemm=avx512" for instance.
	Variant string
}
