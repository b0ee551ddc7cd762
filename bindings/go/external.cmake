# The binding used from a module outside this repository, as its README tells a Go user to:
#
#   cmake -DGO=... -DPKG_CONFIG=... -DPKG_CONFIG_PATH=... -DCC=... -DWORK_DIR=...
#         -DARCHIVE=libsagalane.a -DHEADER=sagalane.h -DBINDING_DIR=bindings/go
#         -DREADME=README.md -DOUT_DIR=dir -DMODE=replace|workspace [-DINSTALL_FROM=build]
#         -P external.cmake
#
# writes a fresh module in OUT_DIR whose go.mod requires the binding by its module path and
# finds it in BINDING_DIR, either through a replace directive (MODE replace) or through a
# go.work using both modules (MODE workspace); writes the README's example program (its
# ```go block that starts with "package main") as its main.go; then vets it, builds it, runs
# it, and checks what it printed.
#
# With INSTALL_FROM, it first installs that build tree into a prefix beside OUT_DIR, and cgo
# finds sagalane there (PKG_CONFIG_PATH pointing at the installed sagalane-static.pc), as it
# does on a machine where sagalane was installed.
cmake_minimum_required(VERSION 3.22)

foreach(_var BINDING_DIR README OUT_DIR MODE)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "external.cmake: ${_var} is not set")
  endif()
endforeach()
if(NOT MODE MATCHES "^(replace|workspace)$")
  message(FATAL_ERROR "external.cmake: MODE must be replace or workspace, not '${MODE}'")
endif()
cmake_path(ABSOLUTE_PATH BINDING_DIR NORMALIZE)

if(DEFINED INSTALL_FROM)
  set(_prefix "${OUT_DIR}.prefix")
  file(REMOVE_RECURSE "${_prefix}")
  execute_process(COMMAND "${CMAKE_COMMAND}" --install "${INSTALL_FROM}" --prefix "${_prefix}"
    OUTPUT_QUIET RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "cmake --install ${INSTALL_FROM} --prefix ${_prefix}: ${_rc}")
  endif()
  # lib or lib/<multiarch>, as GNUInstallDirs chose.
  file(GLOB_RECURSE _pc "${_prefix}/*/sagalane-static.pc")
  file(GLOB_RECURSE ARCHIVE "${_prefix}/*/libsagalane.a")
  set(HEADER "${_prefix}/include/sagalane.h")
  if(NOT _pc OR NOT ARCHIVE OR NOT EXISTS "${HEADER}")
    message(FATAL_ERROR "the install in ${_prefix} lacks sagalane-static.pc, libsagalane.a or sagalane.h")
  endif()
  cmake_path(GET _pc PARENT_PATH PKG_CONFIG_PATH)
  message(STATUS "PKG_CONFIG_PATH=${PKG_CONFIG_PATH}")
endif()
include("${CMAKE_CURRENT_LIST_DIR}/run-go.cmake")

set(_module "example.com/sagalane-user")
set(_binding "github.com/sagalane/sagalane/bindings/go")
file(REMOVE_RECURSE "${OUT_DIR}")
file(MAKE_DIRECTORY "${OUT_DIR}")
file(READ "${README}" _readme)
set(_opening "```go\npackage main\n")
string(FIND "${_readme}" "${_opening}" _start)
if(_start EQUAL -1)
  message(FATAL_ERROR "${README} has no ```go block starting with package main")
endif()
string(LENGTH "```go\n" _fence)
math(EXPR _start "${_start} + ${_fence}")
string(SUBSTRING "${_readme}" ${_start} -1 _program)
string(FIND "${_program}" "\n```" _end)
if(_end EQUAL -1)
  message(FATAL_ERROR "${README}: the example's ```go block is not closed")
endif()
math(EXPR _end "${_end} + 1")
string(SUBSTRING "${_program}" 0 ${_end} _program)
file(WRITE "${OUT_DIR}/main.go" "${_program}")
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
# What the program prints when the saga ran to completion and the log recorded its step with
# the greeting that answered it.
foreach(_line
    "^sagalane [0-9]+\\.[0-9]+\\.[0-9]+\n"
    "\nsaga [0-9]+ completed: [^\n]*\"result\":{\"greeting\":\"hello, world\"}")
  if(NOT _out MATCHES "${_line}")
    message(FATAL_ERROR "the program's output has no line matching ${_line}")
  endif()
endforeach()
