#!/usr/bin/env bash
# Obtains a working FLINK_HOME from PyPI and builds the job-manager's test job.
#
# Usage:  scripts/flink/fetch.sh            # prints FLINK_HOME=... and FLINK_TEST_JOB_JAR=...
#         eval "$(scripts/flink/fetch.sh)"   # exports both into the current shell
#
# PyPI ships Flink as two wheels: `apache-flink-libraries` (lib/, opt/, plugins/) and
# `apache-flink` (bin/, conf/). Unpacked together they are a standalone distribution.
# Needs python3 with pip, and a JDK 17 (java, javac, jar). Everything is cached under
# ${FLINK_SUITE_CACHE:-$HOME/.cache/flink-suite}; a second run does no network I/O.
#
# Environment: FLINK_VERSION (default 2.3.0), FLINK_SUITE_CACHE.
# Progress goes to stderr; stdout carries only the two assignments.
set -euo pipefail

version=${FLINK_VERSION:-2.3.0}
cache=${FLINK_SUITE_CACHE:-${HOME:-/tmp}/.cache/flink-suite}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
home=$cache/flink-$version
jar_out=$cache/counter-job-$version.jar

say() { echo "fetch.sh: $*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { say "missing $1 ($2)"; exit 1; }; }

need python3 "python3 with pip downloads the wheels"
need java "JDK 17 runs Flink"
need javac "JDK 17 compiles the test job"
need jar "JDK 17 packages the test job"

mkdir -p "$cache"

if [ ! -f "$home/lib/flink-dist-$version.jar" ]; then
  dl=$cache/download-$version
  mkdir -p "$dl"
  # The apache-flink wheel is per-CPython; bin/ and conf/ inside it are identical for all.
  pyver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
  say "downloading apache-flink-libraries==$version and apache-flink==$version (~330 MB)"
  python3 -m pip download -q --disable-pip-version-check --no-deps \
    "apache-flink-libraries==$version" -d "$dl" >&2
  if ! python3 -m pip download -q --disable-pip-version-check --no-deps \
      "apache-flink==$version" -d "$dl" >&2; then
    say "no apache-flink wheel for cp$pyver; trying cp311"
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version 3.11 "apache-flink==$version" -d "$dl" >&2
  fi
  staging=$cache/staging-$version
  rm -rf "$staging" && mkdir -p "$staging"
  # bin/ and conf/ come from the apache-flink wheel (pyflink/bin, pyflink/conf).
  flink_wheel=$(ls "$dl"/apache_flink-"$version"-*.whl 2>/dev/null | head -n1 || true)
  [ -n "$flink_wheel" ] || { say "apache-flink $version wheel not downloaded"; exit 1; }
  python3 -m zipfile -e "$flink_wheel" "$staging" >&2
  # lib/, opt/, plugins/: Flink 2.x ships apache-flink-libraries as a wheel (pyflink/...),
  # Flink 1.x as a source tarball (deps/...).
  libs_wheel=$(ls "$dl"/apache_flink_libraries-"$version"-*.whl 2>/dev/null | head -n1 || true)
  libs_sdist=$(ls "$dl"/apache_flink_libraries-"$version".tar.gz 2>/dev/null | head -n1 || true)
  if [ -n "$libs_wheel" ]; then
    python3 -m zipfile -e "$libs_wheel" "$staging" >&2
    libs=$staging/pyflink
  elif [ -n "$libs_sdist" ]; then
    mkdir -p "$staging/sdist" && tar xzf "$libs_sdist" -C "$staging/sdist" >&2
    libs=$(ls -d "$staging"/sdist/*/deps | head -n1)
  else
    say "apache-flink-libraries $version not downloaded"; exit 1
  fi
  rm -rf "$home.partial" && mkdir -p "$home.partial"
  for part in lib opt plugins; do
    [ -d "$libs/$part" ] || { say "apache-flink-libraries has no $part/"; exit 1; }
    cp -r "$libs/$part" "$home.partial/"
  done
  for part in bin conf; do
    [ -d "$staging/pyflink/$part" ] || { say "apache-flink wheel has no pyflink/$part"; exit 1; }
    cp -r "$staging/pyflink/$part" "$home.partial/"
  done
  # bash-java-utils.jar lives in the libraries' bin/ (2.x wheel: already in pyflink/bin).
  if [ -f "$libs/bin/bash-java-utils.jar" ]; then cp "$libs/bin/bash-java-utils.jar" "$home.partial/bin/"; fi
  chmod +x "$home.partial"/bin/*
  mkdir -p "$home.partial/log"
  rm -rf "$home" && mv "$home.partial" "$home"
  rm -rf "$staging" "$dl"
  say "FLINK_HOME assembled at $home"
fi

src=$here/job/src/main/java/suite/probe/CounterJob.java
if [ ! -f "$jar_out" ] || [ "$src" -nt "$jar_out" ]; then
  classes=$cache/counter-job-classes
  rm -rf "$classes" && mkdir -p "$classes"
  say "compiling the test job"
  javac -nowarn -d "$classes" -cp "$home/lib/*" "$src" >&2
  printf 'Main-Class: suite.probe.CounterJob\n' > "$cache/counter-job.mf"
  jar cfm "$jar_out.partial" "$cache/counter-job.mf" -C "$classes" . >&2
  mv "$jar_out.partial" "$jar_out"
fi

echo "FLINK_HOME=$home"
echo "FLINK_TEST_JOB_JAR=$jar_out"
