# The binding used from a module outside this repository, as its README tells a Go user to:
#
#   cmake -DGO=... -DPKG_CONFIG=... -DPKG_CONFIG_PATH=... -DCC=... -DWORK_DIR=...
#         -DARCHIVE=libsagalane.a -DHEADER=sagalane.h -DBINDING_DIR=bindings/go
#         -DPROGRAM=main.go -DOUT_DIR=dir -DMODE=replace|workspace -P external.cmake
#
# writes a fresh module in OUT_DIR whose go.mod requires the binding by its module path and
# finds it in BINDING_DIR, either through a replace directive (MODE replace) or through a
# go.work using both modules (MODE workspace); copies PROGRAM in as its main.go; then vets it,
# builds it, runs it, and checks what it printed.
cmake_minimum_required(VERSION 3.22)

foreach(_var BINDING_DIR PROGRAM OUT_DIR MODE)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "external.cmake: ${_var} is not set")
  endif()
endforeach()
if(NOT MODE MATCHES "^(replace|workspace)$")
  message(FATAL_ERROR "external.cmake: MODE must be replace or workspace, not '${MODE}'")
endif()
cmake_path(ABSOLUTE_PATH BINDING_DIR NORMALIZE)
include("${CMAKE_CURRENT_LIST_DIR}/run-go.cmake")

set(_module "example.com/sagalane-user")
set(_binding "github.com/sagalane/sagalane/bindings/go")
file(REMOVE_RECURSE "${OUT_DIR}")
file(MAKE_DIRECTORY "${OUT_DIR}")
configure_file("${PROGRAM}" "${OUT_DIR}/main.go" COPYONLY)
set(_go_mod "module ${_module}\n\ngo 1.19\n\nrequire ${_binding} v0.0.0\n")
if(MODE STREQUAL "replace")
  string(APPEND _go_mod "\nreplace ${_binding} => ${BINDING_DIR}\n")
  # Only the go.mod decides, whatever go.work a folder above holds.
  set(ENV{GOWORK} off)
else()
  file(WRITE "${OUT_DIR}/go.work" "go 1.19\n\nuse (\n\t.\n\t${BINDING_DIR}\n)\n")
  # The go.work in OUT_DIR, found as the go command finds it for a user.
  unset(ENV{GOWORK})
endif()
file(WRITE "${OUT_DIR}/go.mod" "${_go_mod}")

run_go("${OUT_DIR}" vet ./...)
run_go("${OUT_DIR}" build -o "${OUT_DIR}/user" .)

execute_process(COMMAND "${OUT_DIR}/user"
  WORKING_DIRECTORY "${OUT_DIR}"
  RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err TIMEOUT 60)
message(STATUS "the program printed:\n${_out}${_err}")
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "the program exited with ${_rc}")
endif()
# What the program prints when the saga ran to completion and the log recorded it so.
foreach(_line
    "^sagalane [0-9]+\\.[0-9]+\\.[0-9]+\n"
    "\nsaga [0-9]+ completed\n"
    "\nlog: saga [0-9]+ greet completed, 1 step\\(s\\)\n"
    "\nlog: step 0 output [^\n]*\"result\":{\"greeting\":\"hello, world\"}")
  if(NOT _out MATCHES "${_line}")
    message(FATAL_ERROR "the program's output has no line matching ${_line}")
  endif()
endforeach()
