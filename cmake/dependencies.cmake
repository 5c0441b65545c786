# Finds what mdq builds against and says clearly what is missing.
# CUDA (nvcc, cuBLAS, cuDNN) is optional under MDQ_CUDA=AUTO; Catch2, stb and zlib are required.
find_package(Threads REQUIRED)
find_package(ZLIB)
if(NOT ZLIB_FOUND)
  message(FATAL_ERROR "mdq: zlib not found (needed to read gzip idx files). Install it: apt-get install zlib1g-dev")
endif()

set(_mdq_dep_hints /usr/include /usr/local/include)
if(MDQ_DEPS_DIR)
  list(PREPEND _mdq_dep_hints ${MDQ_DEPS_DIR}/include)
endif()
find_path(STB_INCLUDE_DIR stb/stb_image.h HINTS ${_mdq_dep_hints})
if(NOT STB_INCLUDE_DIR)
  message(FATAL_ERROR "mdq: stb headers not found (stb/stb_image.h). Install them (apt-get install libstb-dev) "
                      "or stage them with scripts/stage-offline-deps.sh and pass -DMDQ_DEPS_DIR=$PWD/.deps")
endif()
if(BUILD_TESTING OR NOT DEFINED BUILD_TESTING)
  find_path(CATCH2_INCLUDE_DIR catch2/catch.hpp HINTS ${_mdq_dep_hints})
  if(NOT CATCH2_INCLUDE_DIR)
    message(FATAL_ERROR "mdq: Catch2 v2 single header not found (catch2/catch.hpp). Install it (apt-get install catch2) "
                        "or stage it with scripts/stage-offline-deps.sh and pass -DMDQ_DEPS_DIR=$PWD/.deps")
  endif()
endif()

# ---- CUDA
set(MDQ_HAS_CUDA OFF)
if(NOT MDQ_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    # cuDNN lives under the toolkit on some machines and in the system paths on others (DESIGN.md §3).
    find_path(CUDNN_INCLUDE_DIR cudnn.h
              HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include/x86_64-linux-gnu /usr/include)
    find_library(CUDNN_LIBRARY cudnn
                 HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu /usr/lib)
    if(NOT TARGET CUDA::cublas)
      message(FATAL_ERROR "mdq: cuBLAS not found in the CUDA toolkit at ${CUDAToolkit_LIBRARY_DIR}. "
                          "Install the toolkit's cuBLAS, or configure with -DMDQ_CUDA=OFF for a CPU-only build.")
    endif()
    if(NOT CUDNN_INCLUDE_DIR OR NOT CUDNN_LIBRARY)
      message(FATAL_ERROR "mdq: cuDNN not found (cudnn.h: '${CUDNN_INCLUDE_DIR}', libcudnn: '${CUDNN_LIBRARY}'). "
                          "Looked under ${CUDAToolkit_INCLUDE_DIRS} and /usr/include/x86_64-linux-gnu. "
                          "Install cuDNN 9 (apt-get install cudnn9-cuda-13), or configure with -DMDQ_CUDA=OFF.")
    endif()
    set(MDQ_HAS_CUDA ON)
    message(STATUS "mdq: CUDA backend ON (archs ${CMAKE_CUDA_ARCHITECTURES}; cuDNN ${CUDNN_LIBRARY})")
  elseif(MDQ_CUDA STREQUAL "ON")
    message(FATAL_ERROR "mdq: MDQ_CUDA=ON but no CUDA compiler (nvcc) was found. Put nvcc on PATH or set CMAKE_CUDA_COMPILER.")
  else()
    message(STATUS "mdq: no nvcc found, building the CPU backend only")
  endif()
endif()

# ---- MPI and NCCL (data-parallel training, engine/dist/): both optional. Without them mdq still
# builds; `mpirun ... mdq-train` and `mdq-train --gpus N` then fail with a message saying what
# is missing (engine/dist/without_*/). MPI starts and joins the ranks and carries CPU gradients;
# NCCL carries GPU gradients (its unique id travels over MPI, or over a pipe under --gpus N).
set(MDQ_HAS_MPI OFF)
# mdq calls MPI's C API from C++ (the project enables no C compiler); no C++ bindings needed.
set(MPI_CXX_SKIP_MPICXX ON)
find_package(MPI COMPONENTS CXX QUIET)
if(MPI_CXX_FOUND)
  set(MDQ_HAS_MPI ON)
  message(STATUS "mdq: MPI ${MPI_CXX_VERSION} found (${MPI_CXX_LIBRARIES}) -- mpirun -np N mdq-train works; mpiexec: ${MPIEXEC_EXECUTABLE}")
else()
  message(STATUS "mdq: MPI not found -- building without it (mpirun runs and the MPI tests are unavailable; "
                 "apt-get install libopenmpi-dev openmpi-bin to add them)")
endif()
set(MDQ_HAS_NCCL OFF)
if(MDQ_HAS_CUDA)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include /usr/local/include)
  find_library(NCCL_LIBRARY nccl
               HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib ${CUDAToolkit_LIBRARY_ROOT}/lib64
                     /usr/lib/x86_64-linux-gnu /usr/lib /usr/local/lib)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    file(STRINGS ${NCCL_INCLUDE_DIR}/nccl.h _mdq_nccl_ver REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
    string(REGEX REPLACE "[^0-9;]" "" _mdq_nccl_ver "${_mdq_nccl_ver}")
    string(REPLACE ";" "." _mdq_nccl_ver "${_mdq_nccl_ver}")
    set(MDQ_HAS_NCCL ON)
    message(STATUS "mdq: NCCL ${_mdq_nccl_ver} found (${NCCL_LIBRARY}) -- multi-GPU training (--gpus N, mpirun) works")
  else()
    message(STATUS "mdq: NCCL not found (nccl.h: '${NCCL_INCLUDE_DIR}', libnccl: '${NCCL_LIBRARY}') -- building "
                   "without multi-GPU training (apt-get install libnccl-dev to add it)")
  endif()
else()
  message(STATUS "mdq: NCCL not looked for (no CUDA backend) -- multi-GPU training unavailable")
endif()

# Warnings on for project code (not for third-party headers, which come in as SYSTEM includes).
function(mdq_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wno-unused-parameter>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall --expt-relaxed-constexpr>)
endfunction()
