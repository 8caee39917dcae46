# Distributed under the same terms as kiln.

#[=======================================================================[.rst:
Kiln
----

Run tests in microVMs: every test runs in a fresh, hardware-isolated Linux
microVM restored from kiln's golden snapshot, and nothing it writes (not even
under ``/etc``) survives it or reaches the host.

.. code-block:: cmake

  find_package(Kiln REQUIRED)   # includes this module

This module defines three functions:

.. command:: add_microvm_test

  Add a test that runs a command in a fresh microVM, like :command:`add_test`::

    add_microvm_test(NAME <name> COMMAND <target-or-exe> [<arg>...]
                     [MEMORY <MiB>]
                     [CPUS <n>]
                     [TIMEOUT <seconds>]
                     [FILES <path>...]
                     [SHARE <dir>... | SHARE NONE]
                     [ENVIRONMENT <K=V>...]
                     [WORKING_DIRECTORY <dir>]
                     [LABELS <label>...]
                     [ENGINE <engine>]
                     [IMAGE <ref>] [USER <user>]
                     [OUTPUT_DIR <dir>]
                     [SETUP <command> [SETUP_FILES <path>...]])

  The test runs ``kiln run [options] -- <exe> <arg>...`` and its result is the
  command's exit code; kiln's own codes are 124 (timeout), 125 (kiln or VM
  failure), 126/127 (not executable / not found).

  ``NAME <name>``
    The ctest name of the test. Required.

  ``COMMAND <target-or-exe> [<arg>...]``
    What to run. Required. An executable target runs as
    ``$<TARGET_FILE:target>`` (define the target before this call); otherwise
    it must be an existing absolute path to an executable file, or a bare name
    (``sh``, ``ls``) that runs from the guest's busybox ``PATH``. The
    executable, its shared libraries and every ``FILES`` entry appear in the
    guest at the same absolute paths. Arguments may use generator expressions.
    An argument spelled like a keyword (all capitals, e.g. ``MEMROY``) is
    rejected as an unknown keyword; pass such a literal as ``$<1:WORD>``.

  ``MEMORY <MiB>``
    Guest memory in MiB (64-65536). Default: ``KILN_DEFAULT_MEMORY`` (256).

  ``CPUS <n>``
    Guest vCPUs (1-64). Default: ``KILN_DEFAULT_CPUS`` (1).

  ``TIMEOUT <seconds>``
    kiln kills the VM after this long and exits 124. The ctest ``TIMEOUT``
    property is set ``KILN_TIMEOUT_MARGIN`` (30) seconds later, so kiln reports
    the timeout and tears the VM down before ctest would kill it. With CMake
    3.27 or newer, a ctest timeout sends kiln SIGTERM first
    (``TIMEOUT_SIGNAL_NAME``), so kiln still tears the VM down.
    Default: ``KILN_DEFAULT_TIMEOUT`` (300).

  ``FILES <path>...``
    Host files or directories to place in the guest at the same absolute path.
    Relative paths are relative to the current source directory. Each must
    exist at configure time (generator expressions are not checked).

  ``SHARE <dir>... | SHARE NONE``
    Host directories the test reads at their own paths in the guest, read-only
    and live, each file read when the test opens it (nothing is copied or
    listed up front); whatever the test writes there stays in a guest-only
    layer and never reaches the host. Relative paths are relative to the
    current source directory; each must be an existing directory at configure
    time. Default: ``KILN_DEFAULT_SHARE``, else the project's source and build
    trees (``CMAKE_SOURCE_DIR`` and ``CMAKE_BINARY_DIR``), so a test that
    opens ``data/x.txt`` relative to its working directory finds it as on the
    host. ``SHARE NONE``: the strictly hermetic mode, where the guest has only
    the executable, its libraries and ``FILES``. ``kiln run --share``; see
    ``docs/shares.md``.

  ``ENVIRONMENT <K=V>...``
    Variables set in the command's environment in the guest (which is
    otherwise hermetic: ``PATH``, ``HOME=/root``, ``LANG=C.UTF-8``). This is
    not ctest's ``ENVIRONMENT`` property, which still sets kiln's own
    environment on the host (e.g. ``KILN_CACHE_DIR``).

  ``WORKING_DIRECTORY <dir>``
    Working directory in the guest. Default: the test's host working
    directory: inside a shared tree it holds the host's files, elsewhere it
    is created empty in the guest.

  ``LABELS <label>...``
    ctest labels; ``microvm`` is always added.

  ``ENGINE <engine>``
    VM engine: ``auto``, ``kvm`` (kiln's own VMM; needs a usable /dev/kvm) or
    ``qemu``. Default: ``KILN_DEFAULT_ENGINE`` (kiln's own default, ``auto``:
    kvm where it works, else qemu).

  ``IMAGE <ref>``
    The guest's root filesystem: an OCI image — ``registry/name:tag``,
    ``name@sha256:...``, a Docker Hub name such as ``debian:bookworm``,
    ``oci:<dir>[:tag]`` (an OCI image layout) or ``docker-archive:<file>`` —
    pulled once, verified and flattened into a read-only disk, with one golden
    snapshot per image digest. ``default`` (the default) is kiln's busybox
    guest; ``KILN_DEFAULT_IMAGE`` sets the default (with the whole-project
    switch: ``-DKILN_DEFAULT_IMAGE=<ref>``). With an image, a bare ``COMMAND`` name is the image's program (its
    ``PATH``), and a target's executable runs with its own libraries, apart
    from the image's (docs/images.md). A plain-HTTP loopback registry needs
    ``KILN_INSECURE_REGISTRIES=host:port`` in the test environment of ctest.

  ``USER <user>``
    Run the command as this user of the guest (``name``, ``uid``,
    ``name:group``, ``uid:gid``). Default: the image's ``User``, else root.

  ``OUTPUT_DIR <dir>``
    The test gets an empty directory in the guest, named by
    ``KILN_OUTPUT_DIR`` (like Bazel's ``TEST_UNDECLARED_OUTPUTS_DIR``); what it
    leaves there comes back into ``<dir>`` (relative: to the current binary
    dir) after the test, pass or fail, up to 100 MiB (docs/outputs.md).
    kiln empties ``<dir>`` at the start of every run. Default:
    ``kiln-outputs/<test name>`` in the current binary dir.

  ``SETUP <command>``
    A fixture: ``<command>`` runs once with ``/bin/sh -c`` (in ``/``, with the
    test's ``ENVIRONMENT``) in a VM restored from the golden snapshot, and that
    VM is saved as a *fixture snapshot*; the test — and every other test with
    the same ``SETUP``, ``SETUP_FILES`` contents and ``ENVIRONMENT`` — then
    starts from it, e.g. with a database server already running and seeded.
    Each test still gets its own VM: what one test writes, no other sees. The
    command's first word, if found on the host's ``PATH`` (or given as a
    path), is placed in the guest with its shared libraries. A setup that exits
    non-zero fails the test with its output, and nothing is saved. Write
    several commands joined with ``&&`` or newlines (a ``;`` would split the
    CMake argument). ``kiln run --setup``.

  ``SETUP_FILES <path>...``
    Host files the setup needs besides its first word (executables come with
    their shared libraries), e.g. a client it seeds the server with. Relative
    paths are relative to the current source directory; each must exist at
    configure time. ``kiln run --setup-file``.

  Layers: the first run of a test executable saves a *payload layer* (the
  executable, its libraries and ``FILES`` placed in the guest) over the
  golden or fixture snapshot; later runs restore it instead of sending the
  payload again, until the executable or a file changes. Set the ctest
  property ``ENVIRONMENT KILN_NO_LAYERS=1`` to send the payload every run.

  Other ctest properties are set as usual with :command:`set_tests_properties`:
  ``WILL_FAIL``, ``SKIP_RETURN_CODE``, ``PASS_REGULAR_EXPRESSION``,
  ``FIXTURES_SETUP``/``FIXTURES_REQUIRED``, ``RESOURCE_LOCK``, ``DEPENDS``…
  The function sets only ``TIMEOUT``, ``LABELS`` and, with the options below,
  ``RESOURCE_GROUPS`` and ``FIXTURES_REQUIRED``.

.. command:: kiln_discover_tests

  Make every GoogleTest case of a test executable its own ctest test, each in
  its own fresh microVM::

    kiln_discover_tests(<target>
                        [EXTRA_ARGS <arg>...]
                        [TEST_PREFIX <prefix>]
                        [TEST_SUFFIX <suffix>]
                        [MEMORY <MiB>] [CPUS <n>] [TIMEOUT <seconds>]
                        [FILES <path>...] [SHARE <dir>... | SHARE NONE]
                        [ENVIRONMENT <K=V>...]
                        [WORKING_DIRECTORY <dir>] [LABELS <label>...]
                        [ENGINE <engine>] [IMAGE <ref>] [USER <user>]
                        [OUTPUT_DIR <dir>]
                        [SETUP <command> [SETUP_FILES <path>...]]
                        [PROPERTIES <name> <value>...]
                        [DISCOVERY_TIMEOUT <seconds>])

  After each build of ``<target>`` (``POST_BUILD``, like
  :command:`gtest_discover_tests`), the executable is run on the host with
  ``--gtest_list_tests`` — no VM is booted to list tests: host and guest run
  the same binary — and one test ``<prefix><Suite>.<Case><suffix>`` is added
  per case, running ``<exe> --gtest_filter=<Suite>.<Case> <extra args>`` in a
  microVM. Cases named ``DISABLED_*`` are added with the ``DISABLED``
  property. Options shared with :command:`add_microvm_test` mean the same.
  The tests are in the order the executable lists them, and it lists with
  ``--gtest_filter=*``: a ``GTEST_FILTER`` in the environment changes nothing,
  so every machine gets the same names in the same order (``ctest -I`` shards,
  docs/fleet.md).

  ``EXTRA_ARGS <arg>...``
    Appended to every test's command line.

  ``OUTPUT_DIR <dir>``
    Each case's outputs come back into ``<dir>/<test name>``. Default:
    ``kiln-outputs`` in the current binary dir.

  ``TEST_PREFIX <prefix>``, ``TEST_SUFFIX <suffix>``
    Put around each test name, e.g. to keep names unique across executables.

  ``PROPERTIES <name> <value>...``
    ctest properties set on every discovered test (``WILL_FAIL``,
    ``RESOURCE_LOCK``…).

  ``DISCOVERY_TIMEOUT <seconds>``
    How long listing may take before the build fails. Default: 5.

.. command:: kiln_run_all_tests

  Run every test of an existing project in microVMs, without rewriting its
  :command:`add_test` calls::

    kiln_run_all_tests([MEMORY <MiB>] [CPUS <n>] [TIMEOUT <seconds>] [ENGINE <engine>]
                       [IMAGE <ref>] [USER <user>] [SHARE <dir>... | SHARE NONE])

  Call it before any target is defined (early in the top-level
  ``CMakeLists.txt``), or leave the project untouched and configure it with
  ``-DCMAKE_PROJECT_TOP_LEVEL_INCLUDES=<prefix>/lib/cmake/Kiln/KilnAllTests.cmake``,
  which calls it from the project's first :command:`project`. Every executable
  target defined afterwards gets kiln as its test launcher
  (``CROSSCOMPILING_EMULATOR`` on CMake 3.25-3.28, ``TEST_LAUNCHER`` on 3.29
  and newer), so an :command:`add_test` whose ``COMMAND`` is such a target,
  and every case :command:`gtest_discover_tests` finds, runs as
  ``kiln run --list-tests-on-host [options] -- <exe> <args>`` in its own fresh
  microVM. Listing the cases (``--gtest_list_tests``, at build time) runs on the
  host: the build boots no VM. Tests whose command is not a built executable
  (``${CMAKE_COMMAND} -P``, ``python3``, ``sh``) stay on the host; to run one
  in a VM, write it as :command:`add_microvm_test`.

  ``TIMEOUT`` is kiln's ``--timeout`` for every test (default: none; keep it
  below any ctest ``TIMEOUT`` the project sets). The other options mean what
  they mean for :command:`add_microvm_test`.

  Limits of the route, printed at the first configure: a test written as
  ``COMMAND $<TARGET_FILE:x>`` gets no launcher (CMake adds it only to a
  target name) and stays on the host; kiln cannot add labels or timeouts to
  the project's tests; the first test bakes the golden snapshot (run
  ``kiln bake`` first to keep that out of the tests' time); and a test that
  writes files in the build tree for later tests (a ``FIXTURES_SETUP`` test
  generating data) writes them into its own VM only: run such a step on the
  host (``add_custom_command``, or a setup test that is a script) instead.

Variables
^^^^^^^^^

``KILN_EXECUTABLE``
  The kiln binary. Default: the imported target ``Kiln::kiln`` from the
  package, else ``find_program(kiln)``.
``KILN_DEFAULT_MEMORY``, ``KILN_DEFAULT_CPUS``, ``KILN_DEFAULT_TIMEOUT``, ``KILN_DEFAULT_ENGINE``, ``KILN_DEFAULT_IMAGE``, ``KILN_DEFAULT_SHARE``
  Project-wide defaults for the keywords above.
``KILN_TIMEOUT_MARGIN``
  Seconds the ctest ``TIMEOUT`` exceeds kiln's own. Default: 30. Keeping a
  failed VM (``KILN_KEEP_FAILED``) takes at most 20 of them.
``KILN_KEEP_FAILED``
  If ON, every test runs with ``kiln run --keep-failed``: the VM of a test
  that fails (non-zero exit, signal, timeout) is saved before it is torn
  down, a timed-out test still running in it, and the test's output ends with
  ``kept the failed VM: kiln shell <id>``. Default: OFF (``KILN_KEEP_FAILED=1``
  in ctest's environment does the same for one run). See ``docs/keep-failed.md``.
``KILN_USE_RESOURCE_GROUPS``
  If ON, every test gets ``RESOURCE_GROUPS microvm_slots:1``, so
  ``ctest -j N --resource-spec-file spec.json`` (``kiln resources > spec.json``)
  never runs more VMs at once than the host's memory allows. Default: OFF.
``KILN_BAKE_FIXTURE``
  If ON (default), one setup test ``kiln.bake.<MiB>M.<n>cpu`` per VM shape
  runs ``kiln bake`` before the tests that need it (fixture
  ``kiln.bake.<MiB>M.<n>cpu``), so the one-time bake is not charged to a
  test's timeout. kiln takes a lock, so concurrent first runs bake once anyway.

Example
^^^^^^^

.. code-block:: cmake

  find_package(GTest REQUIRED)
  find_package(Kiln REQUIRED)
  enable_testing()

  add_executable(parser_test parser_test.cpp)
  target_link_libraries(parser_test PRIVATE GTest::gtest_main)
  kiln_discover_tests(parser_test TEST_PREFIX "parser." MEMORY 512
                      FILES ${CMAKE_CURRENT_SOURCE_DIR}/testdata)

  add_executable(installer_test installer_test.cpp)
  add_microvm_test(NAME installer.writes_etc COMMAND installer_test --root /
                   TIMEOUT 60 LABELS system)
  set_tests_properties(installer.writes_etc PROPERTIES SKIP_RETURN_CODE 77)
#]=======================================================================]

include_guard(GLOBAL)

# Project-wide defaults: a variable set before this point (normal or cache) wins.
macro(_kiln_default var value type doc)
  if(NOT DEFINED ${var})
    set(${var} "${value}" CACHE ${type} "${doc}")
  endif()
endmacro()
_kiln_default(KILN_DEFAULT_MEMORY 256 STRING "Default guest memory (MiB) of microVM tests")
_kiln_default(KILN_DEFAULT_CPUS 1 STRING "Default vCPUs of microVM tests")
_kiln_default(KILN_DEFAULT_TIMEOUT 300 STRING "Default kiln --timeout (seconds) of microVM tests")
_kiln_default(KILN_DEFAULT_ENGINE "" STRING "Default VM engine of microVM tests (empty: kiln's default)")
_kiln_default(KILN_DEFAULT_IMAGE "default" STRING "Default guest image of microVM tests (an OCI image reference, or default)")
_kiln_default(KILN_TIMEOUT_MARGIN 30 STRING "Seconds the ctest TIMEOUT exceeds kiln's --timeout")
_kiln_default(KILN_USE_RESOURCE_GROUPS OFF BOOL "Give every microVM test RESOURCE_GROUPS microvm_slots:1")
_kiln_default(KILN_BAKE_FIXTURE ON BOOL "Bake the golden snapshot in a ctest fixture before microVM tests")
_kiln_default(KILN_KEEP_FAILED OFF BOOL "Keep the VM of a failed microVM test for kiln shell (kiln run --keep-failed)")

# The build-time script of kiln_discover_tests(): beside this module when
# installed, in ctest/ in kiln's source tree.
if(EXISTS "${CMAKE_CURRENT_LIST_DIR}/KilnDiscoverTests.cmake")
  set(_KILN_DISCOVER_SCRIPT "${CMAKE_CURRENT_LIST_DIR}/KilnDiscoverTests.cmake")
else()
  set(_KILN_DISCOVER_SCRIPT "${CMAKE_CURRENT_LIST_DIR}/../ctest/KilnDiscoverTests.cmake")
endif()

# The kiln binary, as a path or a generator expression.
function(_kiln_executable out)
  if(KILN_EXECUTABLE)
    set(${out} "${KILN_EXECUTABLE}" PARENT_SCOPE)
  elseif(TARGET Kiln::kiln)
    set(${out} "$<TARGET_FILE:Kiln::kiln>" PARENT_SCOPE)
  else()
    find_program(KILN_EXECUTABLE kiln DOC "The kiln binary")
    if(NOT KILN_EXECUTABLE)
      message(FATAL_ERROR "kiln: the kiln binary was not found: use find_package(Kiln) or set KILN_EXECUTABLE")
    endif()
    set(${out} "${KILN_EXECUTABLE}" PARENT_SCOPE)
  endif()
endfunction()

function(_kiln_check_range fn keyword value min max)
  if(NOT value MATCHES "^[0-9]+$" OR value LESS min OR value GREATER max)
    message(FATAL_ERROR "${fn}: ${keyword} \"${value}\" must be an integer from ${min} to ${max}")
  endif()
endfunction()

# The `kiln run --share` options for SHARE <dir>... (relative to the current source
# directory; each an existing directory), `NONE` for none; without SHARE the project's
# source and build trees (KILN_DEFAULT_SHARE overrides that default).
function(_kiln_share_args fn out given)
  if(NOT given)
    if(DEFINED KILN_DEFAULT_SHARE)
      set(dirs ${KILN_DEFAULT_SHARE})
    else()
      set(dirs "${CMAKE_SOURCE_DIR}" "${CMAKE_BINARY_DIR}")
    endif()
  else()
    set(dirs ${ARGN})
  endif()
  set(args "")
  if(dirs STREQUAL "NONE")
    set(${out} "" PARENT_SCOPE)
    return()
  endif()
  foreach(dir IN LISTS dirs)
    if(dir STREQUAL "NONE")
      message(FATAL_ERROR "${fn}: SHARE NONE cannot be combined with directories")
    endif()
    if(NOT dir MATCHES "\\$<")
      cmake_path(ABSOLUTE_PATH dir BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE)
      if(NOT EXISTS "${dir}")
        message(FATAL_ERROR "${fn}: SHARE directory \"${dir}\" does not exist")
      elseif(NOT IS_DIRECTORY "${dir}")
        message(FATAL_ERROR "${fn}: SHARE \"${dir}\" is a file, not a directory (use FILES for files)")
      endif()
    endif()
    list(APPEND args --share "${dir}")
  endforeach()
  set(${out} "${args}" PARENT_SCOPE)
endfunction()

# Validate the VM keywords shared by both functions (in the caller's `arg_` variables),
# apply defaults, and set `run_args` (the options of `kiln run`) and `ctest_timeout`.
# The VM keywords of every function, checked alike: arg_MEMORY, arg_CPUS, arg_ENGINE,
# arg_IMAGE (empty becomes "default") and arg_TIMEOUT when given.
macro(_kiln_check_vm_keywords fn)
  _kiln_check_range("${fn}" MEMORY "${arg_MEMORY}" 64 65536)
  _kiln_check_range("${fn}" CPUS "${arg_CPUS}" 1 64)
  if(DEFINED arg_TIMEOUT AND (NOT arg_TIMEOUT MATCHES "^[0-9]+(\\.[0-9]+)?$" OR arg_TIMEOUT EQUAL 0))
    message(FATAL_ERROR "${fn}: TIMEOUT \"${arg_TIMEOUT}\" must be a positive number of seconds")
  endif()
  if(NOT arg_ENGINE STREQUAL "" AND NOT arg_ENGINE MATCHES "^(auto|kvm|qemu)$")
    message(FATAL_ERROR "${fn}: ENGINE \"${arg_ENGINE}\" is not supported: use auto, kvm or qemu")
  endif()
  _kiln_check_image("${fn}" arg_IMAGE)
endmacro()

macro(_kiln_vm_options fn)
  if(arg_UNPARSED_ARGUMENTS)
    list(GET arg_UNPARSED_ARGUMENTS 0 _kiln_word)
    message(FATAL_ERROR "${fn}: unknown keyword: ${_kiln_word}")
  endif()
  foreach(_kiln_kw IN LISTS arg_KEYWORDS_MISSING_VALUES)
    if(NOT _kiln_kw MATCHES "^(FILES|ENVIRONMENT|LABELS|EXTRA_ARGS|PROPERTIES|SETUP_FILES)$")
      message(FATAL_ERROR "${fn}: ${_kiln_kw} needs a value")
    endif()
  endforeach()
  foreach(_kiln_kw MEMORY CPUS TIMEOUT ENGINE IMAGE)
    if(NOT DEFINED arg_${_kiln_kw})
      set(arg_${_kiln_kw} "${KILN_DEFAULT_${_kiln_kw}}")
    endif()
  endforeach()
  _kiln_check_vm_keywords("${fn}")
  # The repeatable options (--env, --file) come first: kiln's CLI would take a
  # `--` right after one of them as the end of its values, not of the options.
  set(run_args "")
  foreach(_kiln_env IN LISTS arg_ENVIRONMENT)
    if(NOT _kiln_env MATCHES "^[^=]+=")
      message(FATAL_ERROR "${fn}: ENVIRONMENT entry \"${_kiln_env}\" must be K=V")
    endif()
    list(APPEND run_args --env "${_kiln_env}")
  endforeach()
  foreach(_kiln_file IN LISTS arg_FILES)
    if(NOT _kiln_file MATCHES "\\$<")
      cmake_path(ABSOLUTE_PATH _kiln_file BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE)
      if(NOT EXISTS "${_kiln_file}")
        message(FATAL_ERROR "${fn}: FILES path \"${_kiln_file}\" does not exist")
      endif()
    endif()
    list(APPEND run_args --file "${_kiln_file}")
  endforeach()
  set(_kiln_share_given OFF)
  if("SHARE" IN_LIST arg_KEYWORDS_MISSING_VALUES OR DEFINED arg_SHARE)
    set(_kiln_share_given ON)
  endif()
  _kiln_share_args("${fn}" _kiln_shares ${_kiln_share_given} ${arg_SHARE})
  list(APPEND run_args ${_kiln_shares})
  if(DEFINED arg_SETUP)
    if(arg_SETUP STREQUAL "" OR arg_SETUP MATCHES "^[ \t\n]*$")
      message(FATAL_ERROR "${fn}: SETUP needs a command")
    endif()
    # A ';' inside the string would have split it into several arguments already:
    # only the first part arrives here. Refuse the call rather than run half a setup.
    list(LENGTH arg_SETUP _kiln_setup_parts)
    if(_kiln_setup_parts GREATER 1)
      message(FATAL_ERROR "${fn}: SETUP must be one command string without ';' (a CMake list separator): "
                          "join commands with && or newlines")
    endif()
    list(APPEND run_args --setup "${arg_SETUP}")
  elseif(arg_SETUP_FILES)
    message(FATAL_ERROR "${fn}: SETUP_FILES needs SETUP")
  endif()
  foreach(_kiln_file IN LISTS arg_SETUP_FILES)
    if(NOT _kiln_file MATCHES "\\$<")
      cmake_path(ABSOLUTE_PATH _kiln_file BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE)
      if(NOT EXISTS "${_kiln_file}")
        message(FATAL_ERROR "${fn}: SETUP_FILES path \"${_kiln_file}\" does not exist")
      endif()
    endif()
    list(APPEND run_args --setup-file "${_kiln_file}")
  endforeach()
  if(DEFINED arg_WORKING_DIRECTORY)
    list(APPEND run_args --cwd "${arg_WORKING_DIRECTORY}")
  endif()
  list(APPEND run_args --timeout ${arg_TIMEOUT} --memory ${arg_MEMORY} --cpus ${arg_CPUS})
  if(KILN_KEEP_FAILED)
    list(APPEND run_args --keep-failed)
  endif()
  if(arg_ENGINE)
    list(APPEND run_args --engine ${arg_ENGINE})
  endif()
  if(NOT arg_IMAGE STREQUAL "default")
    list(APPEND run_args --image ${arg_IMAGE})
  endif()
  if(DEFINED arg_USER)
    list(APPEND run_args --user ${arg_USER})
  endif()
  # Seconds may be fractional: ctest's TIMEOUT is the integer part plus the margin.
  string(REGEX REPLACE "\\..*" "" _kiln_whole "${arg_TIMEOUT}")
  math(EXPR ctest_timeout "${_kiln_whole} + 1 + ${KILN_TIMEOUT_MARGIN}")
endmacro()

# IMAGE: empty means default; white space is no reference.
macro(_kiln_check_image fn var)
  if("${${var}}" STREQUAL "")
    set(${var} "default")
  endif()
  if("${${var}}" MATCHES "[ \t\n]")
    message(FATAL_ERROR "${fn}: IMAGE \"${${var}}\" is not an image reference (it has white space)")
  endif()
endmacro()

# The fixture that bakes the golden snapshot of one VM shape; sets `fixture` (empty when off).
function(_kiln_bake_fixture out memory cpus engine image)
  set(${out} "" PARENT_SCOPE)
  if(NOT KILN_BAKE_FIXTURE)
    return()
  endif()
  set(name "kiln.bake.${memory}M.${cpus}cpu")
  if(engine)
    string(APPEND name ".${engine}")
  endif()
  if(NOT image STREQUAL "default")
    # One fixture per image: it pulls the image and bakes its golden once, before the tests.
    # It asks the registry what a tag names now (--pull always); the tests' kiln runs then
    # use that pin (kiln run's --pull missing): one round trip per ctest run, not per test.
    string(SHA256 _kiln_image_id "${image}")
    string(SUBSTRING "${_kiln_image_id}" 0 12 _kiln_image_id)
    string(REGEX REPLACE "[^A-Za-z0-9_.-]+" "_" _kiln_image_name "${image}")
    string(APPEND name ".${_kiln_image_name}.${_kiln_image_id}")
  endif()
  get_property(defined GLOBAL PROPERTY _KILN_FIXTURE_${name} SET)
  if(NOT defined)
    set_property(GLOBAL PROPERTY _KILN_FIXTURE_${name} 1)
    _kiln_executable(kiln)
    set(args --memory ${memory} --cpus ${cpus})
    if(engine)
      list(APPEND args --engine ${engine})
    endif()
    if(NOT image STREQUAL "default")
      list(APPEND args --image ${image} --pull always)
    endif()
    # Defined in the top-level directory so every directory's tests can require it.
    cmake_language(EVAL CODE "
      cmake_language(DEFER DIRECTORY [[${CMAKE_SOURCE_DIR}]] CALL _kiln_add_bake_test [[${name}]] [[${kiln}]] ${args})")
  endif()
  set(${out} "${name}" PARENT_SCOPE)
endfunction()

function(_kiln_add_bake_test name kiln)
  add_test(NAME ${name} COMMAND ${kiln} bake ${ARGN})
  # A first bake may fetch the kernel: allow it time.
  set_tests_properties(${name} PROPERTIES FIXTURES_SETUP ${name} LABELS "microvm" TIMEOUT 900)
endfunction()

# A bare COMMAND name that becomes a target later would silently run the guest's
# busybox command of that name instead: refuse it once all targets are known.
function(_kiln_check_late_target name test)
  if(TARGET ${name})
    message(FATAL_ERROR "add_microvm_test(${test}): COMMAND \"${name}\" is a target defined after "
                        "add_microvm_test(): define the target first")
  endif()
endfunction()

# Where ctest can (CMake >= 3.27), it sends SIGTERM on timeout: kiln then tears the
# VM down (exit 143) instead of being killed with QEMU left behind.
function(_kiln_timeout_signal test)
  if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.27)
    set_tests_properties(${test} PROPERTIES TIMEOUT_SIGNAL_NAME SIGTERM TIMEOUT_SIGNAL_GRACE_PERIOD 5)
  endif()
endfunction()

function(add_microvm_test)
  set(fn "add_microvm_test")
  cmake_parse_arguments(PARSE_ARGV 0 arg ""
    "NAME;MEMORY;CPUS;TIMEOUT;WORKING_DIRECTORY;ENGINE;IMAGE;USER;SETUP;OUTPUT_DIR"
    "COMMAND;FILES;ENVIRONMENT;LABELS;SETUP_FILES;SHARE")
  if(NOT arg_NAME)
    message(FATAL_ERROR "${fn}: NAME is required")
  endif()
  set(fn "add_microvm_test(${arg_NAME})")
  if(NOT arg_COMMAND)
    message(FATAL_ERROR "${fn}: COMMAND is required")
  endif()
  # COMMAND takes every following word, so a misspelled keyword after it would
  # silently become an argument: reject words that look like keywords.
  list(POP_FRONT arg_COMMAND exe)
  foreach(word IN LISTS arg_COMMAND)
    string(LENGTH "${word}" len)
    if(word MATCHES "^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$" AND len GREATER 2)
      message(FATAL_ERROR "${fn}: unknown keyword: ${word} (if it is meant as an argument of COMMAND, "
                          "write it as $<1:${word}>)")
    endif()
  endforeach()
  _kiln_vm_options(${fn})

  if(TARGET ${exe})
    get_target_property(type ${exe} TYPE)
    if(NOT type STREQUAL "EXECUTABLE")
      message(FATAL_ERROR "${fn}: COMMAND target \"${exe}\" is a ${type}, not an executable")
    endif()
    set(exe "$<TARGET_FILE:${exe}>")
  elseif(exe MATCHES "\\$<")
    # A generator expression: checked by kiln at test time (127/126).
  elseif(IS_ABSOLUTE "${exe}")
    cmake_path(GET exe FILENAME exe_name)
    cmake_path(GET exe PARENT_PATH exe_dir)
    find_program(found NAMES ${exe_name} PATHS ${exe_dir} NO_DEFAULT_PATH NO_CACHE)
    if(IS_DIRECTORY "${exe}" OR NOT found)
      message(FATAL_ERROR "${fn}: COMMAND \"${exe}\" is neither a target nor an executable file")
    endif()
  elseif(exe MATCHES "^[A-Za-z0-9_.+-]+$")
    # A bare name: runs from the guest's busybox PATH, unless it becomes a target later.
    cmake_language(EVAL CODE "
      cmake_language(DEFER DIRECTORY [[${CMAKE_SOURCE_DIR}]] CALL _kiln_check_late_target [[${exe}]] [[${arg_NAME}]])")
  else()
    message(FATAL_ERROR "${fn}: COMMAND \"${exe}\" is neither a target, an absolute path to an "
                        "executable, nor a bare command name for the guest")
  endif()

  _kiln_output_dir(output_dir "${arg_NAME}")
  _kiln_executable(kiln)
  add_test(NAME ${arg_NAME} COMMAND ${kiln} run ${run_args} --output-dir "${output_dir}" --test-name "${arg_NAME}"
                                    -- ${exe} ${arg_COMMAND})
  list(APPEND arg_LABELS microvm)
  list(REMOVE_DUPLICATES arg_LABELS)
  set_tests_properties(${arg_NAME} PROPERTIES TIMEOUT ${ctest_timeout} LABELS "${arg_LABELS}")
  _kiln_timeout_signal(${arg_NAME})
  if(KILN_USE_RESOURCE_GROUPS)
    set_property(TEST ${arg_NAME} APPEND PROPERTY RESOURCE_GROUPS "microvm_slots:1")
  endif()
  _kiln_bake_fixture(fixture ${arg_MEMORY} ${arg_CPUS} "${arg_ENGINE}" "${arg_IMAGE}")
  if(fixture)
    set_property(TEST ${arg_NAME} APPEND PROPERTY FIXTURES_REQUIRED ${fixture})
  endif()
endfunction()

# Where a test's KILN_OUTPUT_DIR comes back to (kiln run --output-dir): OUTPUT_DIR
# (relative to the current binary dir), else kiln-outputs/<test> under it; with an empty
# `test` (kiln_discover_tests), the directory each case's own folder goes under.
function(_kiln_output_dir out test)
  if(DEFINED arg_OUTPUT_DIR)
    set(dir "${arg_OUTPUT_DIR}")
  else()
    set(dir "kiln-outputs/${test}")
  endif()
  cmake_path(ABSOLUTE_PATH dir BASE_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}" NORMALIZE)
  string(REGEX REPLACE "/$" "" dir "${dir}")
  set(${out} "${dir}" PARENT_SCOPE)
endfunction()

# The kiln binary as a path: a test launcher cannot be a generator expression.
function(_kiln_executable_path out fn)
  _kiln_executable(kiln)
  if(kiln STREQUAL "$<TARGET_FILE:Kiln::kiln>")
    get_target_property(imported Kiln::kiln IMPORTED)
    if(NOT imported)
      message(FATAL_ERROR "${fn}: Kiln::kiln is built by this project: set KILN_EXECUTABLE to an installed kiln")
    endif()
    get_target_property(kiln Kiln::kiln IMPORTED_LOCATION)
  endif()
  set(${out} "${kiln}" PARENT_SCOPE)
endfunction()

# Executable targets of `dir` and the directories below it defined so far.
function(_kiln_executable_targets out dir)
  set(found "")
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t IN LISTS targets)
    get_target_property(type ${t} TYPE)
    if(type STREQUAL "EXECUTABLE")
      list(APPEND found ${t})
    endif()
  endforeach()
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    _kiln_executable_targets(below "${sub}")
    list(APPEND found ${below})
  endforeach()
  set(${out} "${found}" PARENT_SCOPE)
endfunction()

# The target property that puts a launcher in front of a target's tests. CMake 3.29
# added TEST_LAUNCHER and, with policy CMP0158, stopped using the emulator for tests
# of native builds; before it, CROSSCOMPILING_EMULATOR is the only prefix.
function(_kiln_launcher_property out)
  if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.29)
    set(${out} TEST_LAUNCHER PARENT_SCOPE)
  else()
    set(${out} CROSSCOMPILING_EMULATOR PARENT_SCOPE)
  endif()
endfunction()

function(kiln_run_all_tests)
  set(fn "kiln_run_all_tests")
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "MEMORY;CPUS;TIMEOUT;ENGINE;IMAGE;USER" "SHARE")
  if(arg_UNPARSED_ARGUMENTS)
    list(GET arg_UNPARSED_ARGUMENTS 0 word)
    message(FATAL_ERROR "${fn}: unknown keyword: ${word}")
  endif()
  foreach(kw IN LISTS arg_KEYWORDS_MISSING_VALUES)
    message(FATAL_ERROR "${fn}: ${kw} needs a value")
  endforeach()
  foreach(kw MEMORY CPUS ENGINE IMAGE)
    if(NOT DEFINED arg_${kw})
      set(arg_${kw} "${KILN_DEFAULT_${kw}}")
    endif()
  endforeach()
  _kiln_check_vm_keywords("${fn}")

  _kiln_launcher_property(property)
  set(var CMAKE_${property})
  if(NOT "${${var}}" STREQUAL "")
    message(FATAL_ERROR "${fn}: ${var} is already set (\"${${var}}\"): kiln would replace it. "
                        "Unset it, or run the tests through it without kiln.")
  endif()
  _kiln_executable_targets(early "${CMAKE_CURRENT_SOURCE_DIR}")
  if(early)
    list(JOIN early ", " early)
    message(WARNING "${fn}: called after the executable targets ${early} were defined: "
                    "their tests stay on the host. Call it before any target.")
  endif()

  set(share_given OFF)
  if(DEFINED arg_SHARE)
    set(share_given ON)
  endif()
  _kiln_share_args("${fn}" shares ${share_given} ${arg_SHARE})
  _kiln_executable_path(kiln "${fn}")
  set(launcher "${kiln}" run --list-tests-on-host ${shares} --memory ${arg_MEMORY} --cpus ${arg_CPUS})
  if(KILN_KEEP_FAILED)
    list(APPEND launcher --keep-failed)
  endif()
  if(DEFINED arg_TIMEOUT)
    list(APPEND launcher --timeout ${arg_TIMEOUT})
  endif()
  if(arg_ENGINE)
    list(APPEND launcher --engine ${arg_ENGINE})
  endif()
  if(NOT arg_IMAGE STREQUAL "default")
    list(APPEND launcher --image ${arg_IMAGE})
  endif()
  if(DEFINED arg_USER)
    list(APPEND launcher --user ${arg_USER})
  endif()
  list(APPEND launcher --)
  set(${var} "${launcher}" PARENT_SCOPE)
  set_property(GLOBAL PROPERTY _KILN_ALL_TESTS_LAUNCHER "${launcher}")
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _kiln_all_tests_summary)
endfunction()

# Imported executables (Python3::Interpreter, a tool found by a package) are not
# built by the project: a test running one is a script test and stays on the host.
# The launcher variable reached them too; take it off where they are visible here.
function(_kiln_keep_imported_on_host dir property launcher)
  get_property(imported DIRECTORY "${dir}" PROPERTY IMPORTED_TARGETS)
  foreach(t IN LISTS imported)
    if(NOT TARGET ${t})
      continue()
    endif()
    get_target_property(type ${t} TYPE)
    get_target_property(prefix ${t} ${property})
    if(type STREQUAL "EXECUTABLE" AND prefix STREQUAL launcher)
      set_target_properties(${t} PROPERTIES ${property} "")
    endif()
  endforeach()
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    _kiln_keep_imported_on_host("${sub}" ${property} "${launcher}")
  endforeach()
endfunction()

# After a build, `kiln tests` says in one line how many tests run in microVMs and
# which stay on the host (only then are gtest_discover_tests()'s cases known). It
# runs again when a test executable is rebuilt (or CMakeCache.txt changes).
function(_kiln_tests_note launcher)
  list(GET launcher 0 kiln)
  set(stamp "${CMAKE_BINARY_DIR}/CMakeFiles/kiln-tests-note.stamp")
  add_custom_command(OUTPUT "${stamp}"
    COMMAND "${kiln}" tests --test-dir "${CMAKE_BINARY_DIR}" --ctest "${CMAKE_CTEST_COMMAND}"
            "$<$<BOOL:$<CONFIG>>:-C;$<CONFIG>>"
    COMMAND "${CMAKE_COMMAND}" -E touch "${stamp}"
    DEPENDS ${ARGN} "${CMAKE_BINARY_DIR}/CMakeCache.txt"
    VERBATIM COMMAND_EXPAND_LISTS)
  add_custom_target(kiln_tests_note ALL DEPENDS "${stamp}")
endfunction()

# At the end of the top-level directory: refuse a cross build (kiln's guests are
# x86_64 Linux), then say what the switch did and, at the first configure, its limits.
function(_kiln_all_tests_summary)
  get_property(launcher GLOBAL PROPERTY _KILN_ALL_TESTS_LAUNCHER)
  if(CMAKE_CROSSCOMPILING)
    message(FATAL_ERROR "kiln_run_all_tests: this build cross-compiles for ${CMAKE_SYSTEM_NAME} "
                        "${CMAKE_SYSTEM_PROCESSOR}; kiln's microVMs are x86_64 Linux and cannot run its tests. "
                        "Configure without the kiln switch (-DKILN_ALL_TESTS=OFF).")
  endif()
  _kiln_launcher_property(property)
  _kiln_keep_imported_on_host("${CMAKE_SOURCE_DIR}" ${property} "${launcher}")
  _kiln_executable_targets(targets "${CMAKE_SOURCE_DIR}")
  set(launched 0)
  set(others "")
  foreach(t IN LISTS targets)
    get_target_property(prefix ${t} ${property})
    if(prefix STREQUAL launcher)
      math(EXPR launched "${launched} + 1")
    else()
      list(APPEND others ${t})
    endif()
  endforeach()
  list(JOIN launcher " " shown)
  message(STATUS "kiln: the tests of ${launched} executable targets run in microVMs (${property}: ${shown}); "
                 "gtest_discover_tests() lists cases on the host and runs each in its own microVM; "
                 "tests of other commands stay on the host")
  _kiln_tests_note("${launcher}" ${targets})
  if(others)
    list(JOIN others ", " others)
    message(WARNING "kiln: these executable targets have another ${property}, and their tests do not run in "
                    "microVMs: ${others}")
  endif()
  if(NOT _KILN_ALL_TESTS_LIMITS_SHOWN)
    set(_KILN_ALL_TESTS_LIMITS_SHOWN ON CACHE INTERNAL "")
    message(WARNING "kiln: limits of running an unmodified project's tests in microVMs:\n"
      "  - a test written as COMMAND $<TARGET_FILE:x> gets no launcher and stays on the host: write COMMAND x\n"
      "  - kiln adds no labels or timeouts to the project's tests; the first test bakes the golden snapshot "
      "(run `kiln bake` before ctest to keep that out of its time)\n"
      "  - a test reads the source and build trees, but what it writes there stays in its VM: a FIXTURES_SETUP "
      "test that generates files for later tests must run on the host\n"
      "  - tests of commands that are not built executables (cmake -P, python3, sh) run on the host")
  endif()
endfunction()

# Bracket-quote each element of a list for a generated CMake script.
function(_kiln_quote_list out)
  set(quoted "")
  foreach(item IN LISTS ARGN)
    string(APPEND quoted " [==[${item}]==]")
  endforeach()
  set(${out} "${quoted}" PARENT_SCOPE)
endfunction()

function(kiln_discover_tests target)
  set(fn "kiln_discover_tests(${target})")
  cmake_parse_arguments(PARSE_ARGV 1 arg ""
    "TEST_PREFIX;TEST_SUFFIX;MEMORY;CPUS;TIMEOUT;WORKING_DIRECTORY;ENGINE;IMAGE;USER;DISCOVERY_TIMEOUT;SETUP;OUTPUT_DIR"
    "EXTRA_ARGS;FILES;ENVIRONMENT;LABELS;PROPERTIES;SETUP_FILES;SHARE")
  if(NOT TARGET ${target})
    message(FATAL_ERROR "${fn}: \"${target}\" is not a target")
  endif()
  get_target_property(type ${target} TYPE)
  if(NOT type STREQUAL "EXECUTABLE")
    message(FATAL_ERROR "${fn}: \"${target}\" is a ${type}, not an executable")
  endif()
  _kiln_vm_options(${fn})
  if(NOT DEFINED arg_DISCOVERY_TIMEOUT)
    set(arg_DISCOVERY_TIMEOUT 5)
  endif()
  if(NOT arg_DISCOVERY_TIMEOUT MATCHES "^[0-9]+$" OR arg_DISCOVERY_TIMEOUT EQUAL 0)
    message(FATAL_ERROR "${fn}: DISCOVERY_TIMEOUT \"${arg_DISCOVERY_TIMEOUT}\" must be a positive integer")
  endif()
  list(LENGTH arg_PROPERTIES n)
  math(EXPR odd "${n} % 2")
  if(odd)
    message(FATAL_ERROR "${fn}: PROPERTIES needs name/value pairs, got: ${arg_PROPERTIES}")
  endif()

  list(APPEND arg_LABELS microvm)
  list(REMOVE_DUPLICATES arg_LABELS)
  _kiln_bake_fixture(fixture ${arg_MEMORY} ${arg_CPUS} "${arg_ENGINE}" "${arg_IMAGE}")

  # Discovery parameters go through a generated file, not -D arguments, so lists
  # and generator expressions survive intact.
  _kiln_executable(kiln)
  set(base "${CMAKE_CURRENT_BINARY_DIR}/${target}_kiln")
  # Multi-config generators: one list per configuration, picked by `ctest -C`.
  get_property(multi_config GLOBAL PROPERTY GENERATOR_IS_MULTI_CONFIG)
  if(multi_config)
    set(file_base "${base}_$<CONFIG>")
    set(ctest_base "${base}_\${CTEST_CONFIGURATION_TYPE}")
  else()
    set(file_base "${base}")
    set(ctest_base "${base}")
  endif()
  _kiln_quote_list(q_run_args ${run_args})
  _kiln_quote_list(q_extra ${arg_EXTRA_ARGS})
  _kiln_output_dir(output_base "")
  _kiln_quote_list(q_props ${arg_PROPERTIES})
  set(timeout_signal 0)
  if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.27)
    set(timeout_signal 1)  # as _kiln_timeout_signal()
  endif()
  set(resource_groups "")
  if(KILN_USE_RESOURCE_GROUPS)
    set(resource_groups "microvm_slots:1")
  endif()
  file(GENERATE OUTPUT "${file_base}_params.cmake" CONTENT "\
set(KILN_EXECUTABLE [==[${kiln}]==])
set(TEST_EXECUTABLE [==[$<TARGET_FILE:${target}>]==])
set(TEST_RUN_ARGS${q_run_args})
set(TEST_OUTPUT_BASE [==[${output_base}]==])
set(TEST_EXTRA_ARGS${q_extra})
set(TEST_PREFIX [==[${arg_TEST_PREFIX}]==])
set(TEST_SUFFIX [==[${arg_TEST_SUFFIX}]==])
set(TEST_TIMEOUT ${ctest_timeout})
set(TEST_LABELS [==[${arg_LABELS}]==])
set(TEST_FIXTURE [==[${fixture}]==])
set(TEST_RESOURCE_GROUPS [==[${resource_groups}]==])
set(TEST_TIMEOUT_SIGNAL ${timeout_signal})
set(TEST_PROPERTIES${q_props})
set(TEST_DISCOVERY_TIMEOUT ${arg_DISCOVERY_TIMEOUT})
set(TEST_TARGET [==[${target}]==])
set(CTEST_FILE [==[${file_base}_tests.cmake]==])
")
  add_custom_command(TARGET ${target} POST_BUILD
    BYPRODUCTS "${file_base}_tests.cmake"
    COMMAND "${CMAKE_COMMAND}" -D "KILN_PARAMS_FILE=${file_base}_params.cmake"
            -P "${_KILN_DISCOVER_SCRIPT}"
    VERBATIM)
  # ctest includes this: the list written by the last build, or, when the test
  # options changed since (a re-configure does not rebuild), a fresh one.
  file(WRITE "${base}_include.cmake" "\
set(KILN_PARAMS_FILE \"${ctest_base}_params.cmake\")
set(_kiln_tests \"${ctest_base}_tests.cmake\")
if(EXISTS \"\${_kiln_tests}\" AND NOT \"\${KILN_PARAMS_FILE}\" IS_NEWER_THAN \"\${_kiln_tests}\")
  include(\"\${_kiln_tests}\")
elseif(EXISTS \"\${KILN_PARAMS_FILE}\")
  include(\"\${KILN_PARAMS_FILE}\")
  if(EXISTS \"\${TEST_EXECUTABLE}\")
    include([==[${_KILN_DISCOVER_SCRIPT}]==])
    include(\"\${_kiln_tests}\")
  else()
    add_test([==[${target}_NOT_BUILT]==] [==[${target}_NOT_BUILT]==])
  endif()
else()
  add_test([==[${target}_NOT_BUILT]==] [==[${target}_NOT_BUILT]==])
endif()
")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${base}_include.cmake")
endfunction()
