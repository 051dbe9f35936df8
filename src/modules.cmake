# The module graph: one static library per folder, lowest first. `USES` lists the only modules a
# module's files may include (tools/check_layering.py checks every #include against it, so a
# dependency pointing the wrong way fails CI). docs/ARCHITECTURE.md explains each module.

# ---- foundations: no knowledge of DeepSeek V4 --------------------------------------------------
qf_module(core src/core LIBS nlohmann_json::nlohmann_json Threads::Threads MPI::MPI_C)
# C bindings only: the deprecated MPI C++ bindings are not built on every system.
target_compile_definitions(qf_core PUBLIC OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1
                           QF_VERSION="${PROJECT_VERSION}")
if(QF_CUDA)
  target_compile_definitions(qf_core PUBLIC QF_HAVE_CUDA=1)
  target_link_libraries(qf_core PUBLIC CUDA::cudart CUDA::cublas CUDA::cublasLt ${QF_NCCL_LIB})
  target_include_directories(qf_core PUBLIC ${QF_NCCL_INCLUDE})
endif()
qf_module(numerics src/numerics USES core)
qf_module(formats src/formats USES core numerics)
if(HDF5_FOUND)
  target_include_directories(qf_formats PUBLIC ${HDF5_INCLUDE_DIRS})
  target_link_libraries(qf_formats PUBLIC ${HDF5_C_LIBRARIES})
  target_compile_definitions(qf_formats PUBLIC QF_HAVE_HDF5=1)
endif()

# ---- math: the CPU reference ops and the CUDA kernels that must match them ---------------------
qf_module(ops src/ops USES core numerics)
qf_module(kernels kernels USES core numerics)
# forward_kernels uses kernels for kernels/launch_util.cuh only.
qf_module(forward_kernels kernels/forward USES core numerics ops kernels)
if(QF_CUDA)
  set_target_properties(qf_kernels qf_forward_kernels PROPERTIES CUDA_SEPARABLE_COMPILATION OFF)
endif()

# ---- the model and the world -------------------------------------------------------------------
qf_module(model src/model USES core numerics formats ops)
target_include_directories(qf_model PUBLIC ${CMAKE_BINARY_DIR}/generated)
qf_module(dist src/dist USES core formats)
qf_module(gpu src/gpu USES core numerics formats ops kernels forward_kernels model dist)
qf_module(tokenizer src/tokenizer USES core formats LIBS ${QF_PCRE2_LIB})
target_include_directories(qf_tokenizer PRIVATE ${PCRE2_INCLUDE_DIRS})

# ---- domain modules (namespace qf::pipeline) ---------------------------------------------------
qf_module(recipe src/recipe USES core model)
qf_module(source src/source USES core numerics formats kernels model recipe)
qf_module(synthetic src/synthetic USES core numerics formats model)
qf_module(plan src/plan USES core formats model dist recipe source)
qf_module(calibrate src/calibrate USES core numerics formats model dist gpu recipe source)
qf_module(quantize src/quantize USES core numerics formats kernels model dist gpu recipe source
          calibrate)
qf_module(export src/export USES core formats model dist recipe source quantize)
qf_module(report src/report USES core formats)
qf_module(job src/job USES core formats model dist gpu recipe source calibrate quantize export
          report plan)
qf_module(status src/status USES core formats dist recipe quantize export job)
qf_module(dequant src/dequant USES core formats model dist gpu source)
qf_module(validate src/validate USES core numerics formats kernels model recipe source quantize
          report)
qf_module(eval src/eval USES core numerics formats ops model dist source calibrate report)
qf_module(inspect src/inspect USES core formats model)

# ---- everything: the command line, tests and benches link it ------------------------------
add_library(qf_all INTERFACE)
target_link_libraries(qf_all INTERFACE qf_job qf_status qf_dequant qf_validate qf_eval qf_synthetic
                      qf_plan qf_tokenizer qf_inspect)
