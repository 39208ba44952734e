package suite.probe;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/**
 * The job-manager's lifecycle test job: an endless generator of longs, keyed by value modulo
 * {@code --keys}, counted per key in keyed ValueState (so savepoints carry real state), then
 * discarded.
 *
 * <p>Flags: {@code --rate N} records per second (default 50), {@code --keys K} (default 8),
 * {@code --name NAME} job name, {@code --fail-after-records M} throw once a subtask has seen M
 * records (drives restarts and FAILED).
 */
public final class CounterJob {
    private CounterJob() {}

    public static void main(String[] args) throws Exception {
        long rate = 50;
        long keys = 8;
        long failAfter = 0;
        String name = "job-manager-counter";
        int i = 0;
        while (i < args.length) {
            String flag = args[i];
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("flag " + flag + " needs a value");
            }
            String value = args[i + 1];
            if (flag.equals("--rate")) {
                rate = Long.parseLong(value);
            } else if (flag.equals("--keys")) {
                keys = Long.parseLong(value);
            } else if (flag.equals("--fail-after-records")) {
                failAfter = Long.parseLong(value);
            } else if (flag.equals("--name")) {
                name = value;
            } else {
                throw new IllegalArgumentException("unknown flag " + flag);
            }
            i += 2;
        }
        final long keyCount = keys;
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        DataGeneratorSource<Long> source =
                new DataGeneratorSource<>(
                        index -> index, Long.MAX_VALUE, RateLimiterStrategy.perSecond(rate), Types.LONG);
        env.fromSource(source, WatermarkStrategy.noWatermarks(), "numbers")
                .uid("numbers")
                .keyBy(value -> value % keyCount)
                .map(new KeyCounter(failAfter))
                .uid("key-counter")
                .name("key-counter")
                .sinkTo(new DiscardingSink<>())
                .uid("discard")
                .name("discard");
        env.execute(name);
    }

    /** Counts records per key in keyed state; optionally fails after a number of records. */
    public static final class KeyCounter extends RichMapFunction<Long, Long> {
        private final long failAfter;
        private transient ValueState<Long> perKey;
        private transient long seenBySubtask;

        public KeyCounter(long failAfter) {
            this.failAfter = failAfter;
        }

        @Override
        public void open(OpenContext context) {
            perKey = getRuntimeContext().getState(new ValueStateDescriptor<>("per-key", Types.LONG));
        }

        @Override
        public Long map(Long value) throws Exception {
            seenBySubtask++;
            if (failAfter > 0 && seenBySubtask >= failAfter) {
                throw new IllegalStateException(
                        "CounterJob: failing on purpose after " + seenBySubtask + " records (--fail-after-records)");
            }
            Long current = perKey.value();
            long next = current == null ? 1L : current + 1L;
            perKey.update(next);
            return next;
        }
    }
}
