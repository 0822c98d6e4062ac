# Sanitizer builds. CUTUNE_SANITIZE=ON compiles and links the library, the CLI, the tests and the
# benchmarks with AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer, gcc or
# clang; any undefined behaviour stops the program (-fno-sanitize-recover), so a test that meets
# one fails. scripts/sanitize-and-fuzz.sh runs the test suite under it. The libFuzzer build
# (CUTUNE_FUZZ, tests/fuzz/) sets its own sanitizers; the two are separate builds.
#
# Included from CMakeLists.txt before any target, so the options reach every target.
option(CUTUNE_SANITIZE "Build everything with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)

# What clang needs to build the tree (the fuzzers need clang; CUTUNE_SANITIZE takes it too).
# gcc's -fopenmp implies -pthread, which defines _REENTRANT and with it the POSIX.1c names
# (strtok_r, clock_gettime) that some sources use without asking for them; clang's -fopenmp does
# not, so a clang build asks for the same. Duplicate type qualifiers (a macro's `const` in front
# of a `const char *` argument) are valid C (C11 6.7.3p5) that clang warns about.
if(CMAKE_C_COMPILER_ID MATCHES "Clang")
  add_compile_options($<$<COMPILE_LANGUAGE:C>:-pthread>
                      $<$<COMPILE_LANGUAGE:C>:-Wno-duplicate-decl-specifier>)
endif()

if(CUTUNE_SANITIZE)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "CUTUNE_SANITIZE needs gcc or clang, not ${CMAKE_C_COMPILER_ID}")
  endif()
  if(CUTUNE_FUZZ)
    message(FATAL_ERROR "CUTUNE_SANITIZE and CUTUNE_FUZZ are separate builds: choose one")
  endif()
  # Frame pointers and -g: whole stacks with file and line in every report. The flags go to C
  # only; nvcc takes none of them (a sanitized build is a CPU build: CUTUNE_CUDA=OFF).
  foreach(flag -fsanitize=address -fsanitize=undefined -fno-sanitize-recover=undefined
               -fno-omit-frame-pointer -g)
    add_compile_options($<$<COMPILE_LANGUAGE:C>:${flag}>)
  endforeach()
  add_link_options($<$<LINK_LANGUAGE:C>:-fsanitize=address>
                   $<$<LINK_LANGUAGE:C>:-fsanitize=undefined>)
  # gcc's flow-based warnings see the sanitizers' inserted checks as paths of the program and
  # report what cannot happen (a NULL snprintf destination in csvlog.c's ct_format_double); the
  # gcc manual advises against -Werror with sanitizers for this reason. They stay warnings here
  # and errors in the normal build, which CI builds too.
  if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
    foreach(w format-truncation format-overflow maybe-uninitialized stringop-overflow
              stringop-truncation array-bounds)
      add_compile_options($<$<COMPILE_LANGUAGE:C>:-Wno-error=${w}>)
    endforeach()
  endif()
  message(STATUS "cutune: AddressSanitizer and UndefinedBehaviorSanitizer ON")
endif()
