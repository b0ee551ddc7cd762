# Runs the Go toolchain on this module against the build tree's libraries:
#
#   cmake -DGO=... -DPKG_CONFIG=... -DPKG_CONFIG_PATH=... -DCC=... -DWORK_DIR=...
#         -DARCHIVE=libsagalane.a -DHEADER=sagalane.h -DSTAMP=name
#         -P go.cmake -- SUBCOMMAND ARGS...
#
# runs `go SUBCOMMAND ARGS...` in this folder with everything it needs in the environment:
# cgo finds sagalane through pkg-config, and the Go cache and GOPATH live in WORK_DIR, so it
# runs as any user on a fresh machine (HOME may be unset) and never reaches the network.
#
# Go's build cache does not notice a change in a library or header outside the module, which
# cgo only names in flags. So when ARCHIVE or HEADER changed since this STAMP's last
# successful run, the command runs with -a, rebuilding everything; otherwise the cache serves.
cmake_minimum_required(VERSION 3.22)

foreach(_var GO PKG_CONFIG PKG_CONFIG_PATH CC WORK_DIR ARCHIVE HEADER STAMP)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "go.cmake: ${_var} is not set")
  endif()
endforeach()

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
if(NOT _args)
  message(FATAL_ERROR "go.cmake: no go subcommand given")
endif()

set(_fingerprint "")
foreach(_input "${ARCHIVE}" "${HEADER}")
  file(SHA256 "${_input}" _hash)
  string(APPEND _fingerprint "${_hash}  ${_input}\n")
endforeach()
set(_stamp "${WORK_DIR}/stamps/${STAMP}")
set(_previous "")
if(EXISTS "${_stamp}")
  file(READ "${_stamp}" _previous)
endif()
if(NOT _previous STREQUAL _fingerprint)
  list(INSERT _args 1 -a)
endif()

set(ENV{PKG_CONFIG} "${PKG_CONFIG}")
set(ENV{PKG_CONFIG_PATH} "${PKG_CONFIG_PATH}")
set(ENV{CC} "${CC}")
set(ENV{CGO_ENABLED} 1)
set(ENV{GOCACHE} "${WORK_DIR}/cache")
set(ENV{GOPATH} "${WORK_DIR}/gopath")
set(ENV{GOENV} off)
set(ENV{GOFLAGS} "")
set(ENV{GOPROXY} off)
set(ENV{GOTOOLCHAIN} local)
set(ENV{GO111MODULE} on)

list(JOIN _args " " _shown)
message(STATUS "go ${_shown}")
execute_process(COMMAND "${GO}" ${_args}
  WORKING_DIRECTORY "${CMAKE_CURRENT_LIST_DIR}"
  RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "go ${_shown}: ${_rc}")
endif()
file(WRITE "${_stamp}" "${_fingerprint}")
