# corio_add_layer_tests(<tests_dir>)
#
# For every direct subfolder D of <tests_dir> that holds at least one *_test.cpp, builds one GoogleTest
# executable corio_${D}_tests from tests/D/*.cpp (the *_test.cpp files plus any helper .cpp files there),
# links it to corio::corio and GoogleTest, and registers each test case with ctest under the label D.
# Folders without *_test.cpp (e.g. tests/install/, tests/common/) are ignored. New layers need no CMake
# change. Every test target also has <tests_dir> on its include path, so a test can include the shared
# helpers as "common/test_util.hpp".
function(corio_add_layer_tests tests_dir)
  file(GLOB _children RELATIVE "${tests_dir}" "${tests_dir}/*")
  list(SORT _children)
  foreach(_layer IN LISTS _children)
    set(_dir "${tests_dir}/${_layer}")
    if(NOT IS_DIRECTORY "${_dir}")
      continue()
    endif()
    file(GLOB _tests CONFIGURE_DEPENDS "${_dir}/*_test.cpp")
    if(NOT _tests)
      continue()
    endif()
    # Everything in the folder: the *_test.cpp files and their helpers.
    file(GLOB _sources CONFIGURE_DEPENDS "${_dir}/*.cpp")

    set(_target corio_${_layer}_tests)
    add_executable(${_target} ${_sources})
    target_include_directories(${_target} PRIVATE "${_dir}" "${tests_dir}")
    target_link_libraries(${_target} PRIVATE corio::corio GTest::gtest GTest::gtest_main)
    if(TARGET GTest::gmock)
      target_link_libraries(${_target} PRIVATE GTest::gmock)
    endif()
    target_compile_options(${_target} PRIVATE
      $<$<OR:$<CXX_COMPILER_ID:GNU>,$<CXX_COMPILER_ID:Clang>>:-Wall -Wextra>)
    gtest_discover_tests(${_target}
      DISCOVERY_MODE PRE_TEST
      PROPERTIES LABELS ${_layer} TIMEOUT 120)
    message(STATUS "corio: tests/${_layer}: ${_target}")
  endforeach()
endfunction()

# corio_add_env_test(<name> <target> <gtest_filter> <VAR=value>...)
#
# Registers one ctest entry running <target> with --gtest_filter=<gtest_filter> in a process whose
# environment also has the given variables (for settings the library reads once per process, such as
# CORIO_DEBUG). Such tests GTEST_SKIP when their variable is missing, so the layer's normal run passes;
# here the pass expression requires exactly one test to have passed, so a skip, a failure or a filter that
# matches nothing fails the entry.
function(corio_add_env_test name target filter)
  add_test(NAME ${name} COMMAND ${target} --gtest_filter=${filter})
  string(REGEX REPLACE "^corio_([^_]+)_tests$" "\\1" _layer "${target}")
  set_tests_properties(${name} PROPERTIES
    ENVIRONMENT "${ARGN}"
    LABELS ${_layer}
    TIMEOUT 120
    PASS_REGULAR_EXPRESSION "\\[  PASSED  \\] 1 test\\.")
endfunction()
