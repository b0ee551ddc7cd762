# Runs the Go toolchain on one module against the build tree's libraries:
#
#   cmake -DGO=... -DPKG_CONFIG=... -DPKG_CONFIG_PATH=... -DCC=... -DWORK_DIR=...
#         -DARCHIVE=libsagalane.a -DHEADER=sagalane.h -DMODULE_DIR=dir
#         -P go.cmake -- SUBCOMMAND ARGS...
#
# runs `go SUBCOMMAND ARGS...` in MODULE_DIR (the folder holding its go.mod) with everything
# it needs in the environment (see run-go.cmake). A go.work the checkout sits in is ignored:
# the module builds as its go.mod says.
cmake_minimum_required(VERSION 3.22)

if(NOT DEFINED MODULE_DIR)
  message(FATAL_ERROR "go.cmake: MODULE_DIR is not set")
endif()

# The Go arguments are what follows "--" on the command line.
set(_args "")
set(_after_dashes FALSE)
math(EXPR _last "${CMAKE_ARGC} - 1")
foreach(_i RANGE 1 ${_last})
  if(_after_dashes)
    list(APPEND _args "${CMAKE_ARGV${_i}}")
  elseif(CMAKE_ARGV${_i} STREQUAL "--")
    set(_after_dashes TRUE)
  endif()
endforeach()

include("${CMAKE_CURRENT_LIST_DIR}/run-go.cmake")
set(ENV{GOWORK} off)
run_go("${MODULE_DIR}" ${_args})
