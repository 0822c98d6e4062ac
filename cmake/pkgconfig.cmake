# cutune.pc for pkg-config: `pkg-config --cflags --libs cutune` links the shared library;
# `--static` adds what the static library needs (Libs.private), written out from the libraries
# this build found.
set(_pc_private "")
foreach(dep ${OPENBLAS_LIBRARY} ${DNNL_LIBRARY} ${CUTUNE_HDF5_LIBS} ${CJSON_LIBRARY} ${PNG_LIBRARIES}
            ${JPEG_LIBRARIES} ${CURL_LIBRARIES} ${OPENSSL_CRYPTO_LIBRARY})
  if(dep MATCHES "^/")
    get_filename_component(_dir "${dep}" DIRECTORY)
    get_filename_component(_name "${dep}" NAME_WE)
    string(REGEX REPLACE "^lib" "" _name "${_name}")
    string(APPEND _pc_private " -L${_dir} -l${_name}")
  elseif(NOT dep MATCHES "::")
    string(APPEND _pc_private " -l${dep}")
  endif()
endforeach()
string(APPEND _pc_private " ${OpenMP_C_FLAGS} -lpthread -lm")
if(CUTUNE_HAVE_CUDA)
  get_filename_component(_cudnn_dir "${CUDNN_LIBRARY}" DIRECTORY)
  string(APPEND _pc_private " -L${CUDAToolkit_LIBRARY_DIR} -lcudart -lcublas -lcublasLt"
         " -L${_cudnn_dir} -lcudnn -lstdc++")
endif()
if(CUTUNE_HAVE_NCCL)
  string(APPEND _pc_private " -ldl") # libnccl.so.2 is loaded at run time
endif()
if(CUTUNE_HAVE_MPI)
  foreach(dep ${MPI_C_LIBRARIES})
    string(APPEND _pc_private " ${dep}")
  endforeach()
endif()
set(CUTUNE_PC_LIBS_PRIVATE "${_pc_private}")
# The prefix relative to the .pc file, so that an installed tree can be moved (or installed with
# `cmake --install --prefix`) and still be found.
file(RELATIVE_PATH CUTUNE_PC_PREFIX_REL "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig"
     "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" CUTUNE_PC_PREFIX_REL "${CUTUNE_PC_PREFIX_REL}")
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/cutune.pc.in ${CMAKE_CURRENT_BINARY_DIR}/cutune.pc
               @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/cutune.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
