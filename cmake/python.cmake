# The Python wheel. scikit-build-core (pyproject.toml) configures this project with SKBUILD set
# and installs the "python" component only: libcutune.so beside the package (python/cutune
# loads it with ctypes) and the cutune command in the environment's bin/. The command links the
# static library, so it needs nothing from the package. Outside a wheel build this adds nothing.
if(SKBUILD)
  install(FILES $<TARGET_FILE:cutune_shared> DESTINATION ${SKBUILD_PLATLIB_DIR}/cutune
          RENAME libcutune.so COMPONENT python)
  install(PROGRAMS $<TARGET_FILE:cutune_cli> DESTINATION ${SKBUILD_SCRIPTS_DIR}
          COMPONENT python)
endif()
