# run_go(MODULE_DIR ARGS...) runs `go ARGS...` in MODULE_DIR against the build tree's
# libraries, for the scripts go.cmake and external.cmake. The caller sets GO, PKG_CONFIG,
# PKG_CONFIG_PATH, CC, WORK_DIR, ARCHIVE and HEADER.
#
# cgo finds sagalane through pkg-config, and the Go cache and GOPATH live in WORK_DIR, so it
# runs as any user on a fresh machine (HOME may be unset) and never reaches the network.
#
# Go's build cache does not notice a change in a library or header outside the module: cgo
# only names them in flags. It does hash CGO_CFLAGS into every cgo package's key, so a define
# carrying the hash of ARCHIVE and HEADER makes it rebuild the binding (and the standard
# library's few cgo packages) and relink whenever either changed, and only then; `go build
# -a`, the other way, would rebuild the whole standard library every time.

foreach(_var GO PKG_CONFIG PKG_CONFIG_PATH CC WORK_DIR ARCHIVE HEADER)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "${CMAKE_CURRENT_LIST_FILE}: ${_var} is not set")
  endif()
endforeach()

set(_fingerprint "")
foreach(_input "${ARCHIVE}" "${HEADER}")
  file(SHA256 "${_input}" _hash)
  string(APPEND _fingerprint "${_hash}")
endforeach()
string(SHA256 _fingerprint "${_fingerprint}")
string(SUBSTRING "${_fingerprint}" 0 16 _fingerprint)

set(ENV{PKG_CONFIG} "${PKG_CONFIG}")
set(ENV{PKG_CONFIG_PATH} "${PKG_CONFIG_PATH}")
set(ENV{CC} "${CC}")
set(ENV{CGO_ENABLED} 1)
# -g -O2 is cgo's default, which setting CGO_CFLAGS replaces.
set(ENV{CGO_CFLAGS} "-g -O2 -DSAGALANE_LIBRARY_FINGERPRINT=${_fingerprint}")
set(ENV{GOCACHE} "${WORK_DIR}/cache")
set(ENV{GOPATH} "${WORK_DIR}/gopath")
set(ENV{GOENV} off)
set(ENV{GOFLAGS} "")
set(ENV{GOPROXY} off)
set(ENV{GOTOOLCHAIN} local)
set(ENV{GO111MODULE} on)

function(run_go module_dir)
  set(_args ${ARGN})
  if(NOT _args)
    message(FATAL_ERROR "run_go: no go subcommand given")
  endif()
  list(JOIN _args " " _shown)
  message(STATUS "(in ${module_dir}) go ${_shown}")
  execute_process(COMMAND "${GO}" ${_args}
    WORKING_DIRECTORY "${module_dir}"
    RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "go ${_shown}: ${_rc}")
  endif()
endfunction()
