# Sourced by .ci/run: fetches Flink from PyPI (cached) and builds the job-manager's test job,
# so the real-Flink end-to-end tests of crates/job-manager run instead of skipping.
# Exports FLINK_HOME and FLINK_TEST_JOB_JAR.
if flink_env=$(scripts/flink/fetch.sh); then
  eval "$flink_env"
  export FLINK_HOME FLINK_TEST_JOB_JAR
  echo "Flink: FLINK_HOME=$FLINK_HOME test job $FLINK_TEST_JOB_JAR"
else
  echo "Flink could not be fetched; the real-Flink tests of job-manager will skip." >&2
fi
unset flink_env
