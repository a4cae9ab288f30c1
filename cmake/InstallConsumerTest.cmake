# Run with cmake -P (see the install_consumer test in CMakeLists.txt). Installs the built corio into a fresh
# prefix, then configures, builds and runs tests/install/consumer against it with find_package(corio).
#
# Inputs (-D): CORIO_BUILD_DIR, CORIO_CONSUMER_SOURCE_DIR, CORIO_WORK_DIR, CORIO_CONFIG, CORIO_GENERATOR,
#              CORIO_CXX_COMPILER, CORIO_CXX_FLAGS, CORIO_SANITIZE
cmake_minimum_required(VERSION 3.22)

foreach(_var CORIO_BUILD_DIR CORIO_CONSUMER_SOURCE_DIR CORIO_WORK_DIR CORIO_CXX_COMPILER)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "install_consumer: ${_var} not set")
  endif()
endforeach()
if(NOT CORIO_CONFIG)
  set(CORIO_CONFIG Release)
endif()

# A unique directory per run, so parallel or repeated runs never see each other's files.
string(RANDOM LENGTH 8 _rand)
string(TIMESTAMP _stamp "%Y%m%d%H%M%S")
set(_work "${CORIO_WORK_DIR}/${_stamp}-${_rand}")
set(_prefix "${_work}/prefix")
set(_build "${_work}/build")
file(REMOVE_RECURSE "${_work}")
file(MAKE_DIRECTORY "${_work}")

function(corio_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "install_consumer: ${what} failed (${_rc}); work dir kept: ${_work}")
  endif()
endfunction()

set(_flags "${CORIO_CXX_FLAGS}")
if(CORIO_SANITIZE)
  string(APPEND _flags " -fsanitize=${CORIO_SANITIZE} -fno-omit-frame-pointer")
  if(CORIO_SANITIZE MATCHES "undefined")
    string(APPEND _flags " -fno-sanitize-recover=undefined")
  endif()
endif()
string(STRIP "${_flags}" _flags)

set(_gen_args)
if(CORIO_GENERATOR)
  set(_gen_args -G "${CORIO_GENERATOR}")
endif()

message(STATUS "install_consumer: installing into ${_prefix}")
corio_step("cmake --install" ${CMAKE_COMMAND} --install "${CORIO_BUILD_DIR}" --config "${CORIO_CONFIG}"
           --prefix "${_prefix}")

message(STATUS "install_consumer: configuring consumer (flags: '${_flags}')")
corio_step("consumer configure" ${CMAKE_COMMAND} ${_gen_args}
  -S "${CORIO_CONSUMER_SOURCE_DIR}" -B "${_build}"
  "-DCMAKE_PREFIX_PATH=${_prefix}"
  "-DCMAKE_BUILD_TYPE=${CORIO_CONFIG}"
  "-DCMAKE_CXX_COMPILER=${CORIO_CXX_COMPILER}"
  "-DCMAKE_CXX_FLAGS=${_flags}"
  "-DCMAKE_EXE_LINKER_FLAGS=${_flags}")

message(STATUS "install_consumer: building consumer")
corio_step("consumer build" ${CMAKE_COMMAND} --build "${_build}" --config "${CORIO_CONFIG}")

set(_exe "${_build}/corio_consumer")
if(NOT EXISTS "${_exe}" AND EXISTS "${_build}/${CORIO_CONFIG}/corio_consumer")
  set(_exe "${_build}/${CORIO_CONFIG}/corio_consumer")
endif()
message(STATUS "install_consumer: running ${_exe}")
corio_step("consumer run" "${_exe}")

file(REMOVE_RECURSE "${_work}")
message(STATUS "install_consumer: OK")
