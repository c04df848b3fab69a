package bench;

import com.google.common.util.concurrent.FutureCallback;
import com.google.common.util.concurrent.Futures;
import com.google.common.util.concurrent.MoreExecutors;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.atomic.AtomicLong;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.kinesis.producer.KinesisProducer;
import software.amazon.kinesis.producer.KinesisProducerConfiguration;
import software.amazon.kinesis.producer.UserRecordResult;

/**
 * The official KPL's side of benchmarks/kpl.py: puts records through addUserRecord against a
 * local endpoint, the way an application would (one future per record, a callback counting
 * the outcomes, at most --outstanding records not yet answered).
 *
 * <p>Line protocol with the driver on stdin/stdout, so that it measures CPU only around the
 * measured run: after start-up and a warm-up run it prints "READY", waits for "GO", puts
 * --count records, prints "DONE ok failed seconds", and stops at end of input (or "EXIT").
 * Records: --size bytes of random data each; partition keys unique hex ids like the
 * producer's (random hash keys), or one key for every record (--hot-key).
 */
public final class KplHarness {
    private static final String STREAM = "bench";

    private final KinesisProducer producer;
    private final int outstanding;
    private final byte[] pool;
    private final int size;
    private final boolean hotKey;
    private final String prefix;
    private long next;

    private KplHarness(KinesisProducer producer, Map<String, String> args) {
        this.producer = producer;
        this.outstanding = Integer.parseInt(args.get("outstanding"));
        this.size = Integer.parseInt(args.get("size"));
        this.hotKey = Boolean.parseBoolean(args.getOrDefault("hot-key", "false"));
        Random random = new Random(size);
        this.pool = new byte[1 << 20];
        random.nextBytes(pool);
        this.prefix = String.format("%016x", random.nextLong());
    }

    /** Keys and data views made before the clock starts: the application already has them. */
    private String[] keys(int count) {
        String[] keys = new String[count];
        for (int i = 0; i < count; i++) {
            keys[i] = hotKey ? "hot-key" : prefix + "-" + Long.toHexString(++next);
        }
        return keys;
    }

    private ByteBuffer[] data(int count) {
        ByteBuffer[] data = new ByteBuffer[count];
        int span = pool.length - size;
        for (int i = 0; i < count; i++) {
            data[i] = ByteBuffer.wrap(pool, (int) ((next + i) * 7919L % span), size);
        }
        return data;
    }

    /** Puts the records; returns {accepted, failed} once every future completed. */
    private long[] run(String[] keys, ByteBuffer[] data) throws InterruptedException {
        AtomicLong ok = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        FutureCallback<UserRecordResult> count = new FutureCallback<>() {
            @Override
            public void onSuccess(UserRecordResult result) {
                (result.isSuccessful() ? ok : failed).incrementAndGet();
            }

            @Override
            public void onFailure(Throwable t) {
                failed.incrementAndGet();
            }
        };
        for (int i = 0; i < keys.length; i++) {
            while (producer.getOutstandingRecordsCount() >= outstanding) {
                Thread.sleep(1);
            }
            Futures.addCallback(
                    producer.addUserRecord(STREAM, keys[i], data[i]), count, MoreExecutors.directExecutor());
        }
        producer.flushSync();
        while (ok.get() + failed.get() < keys.length) {
            Thread.sleep(1);
        }
        return new long[] {ok.get(), failed.get()};
    }

    private static Map<String, String> parse(String[] argv) {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            args.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        }
        return args;
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = parse(argv);
        KinesisProducerConfiguration config = new KinesisProducerConfiguration()
                .setRegion("us-east-1")
                .setKinesisEndpoint("127.0.0.1")
                .setKinesisPort(Long.parseLong(args.get("port")))
                .setVerifyCertificate(false)
                .setMetricsLevel("none")
                .setLogLevel("warning")
                .setRateLimit(Long.parseLong(args.get("rate-limit")))
                .setTempDirectory(args.get("temp-dir"))
                .setCredentialsProvider(
                        StaticCredentialsProvider.create(AwsBasicCredentials.create("bench", "bench")));
        KinesisProducer producer = new KinesisProducer(config);
        KplHarness harness = new KplHarness(producer, args);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try {
            int warmup = Integer.parseInt(args.get("warmup"));
            long[] warm = harness.run(harness.keys(warmup), harness.data(warmup));
            if (warm[1] != 0) {
                throw new IllegalStateException(warm[1] + " warm-up records failed");
            }
            int count = Integer.parseInt(args.get("count"));
            String[] keys = harness.keys(count);
            ByteBuffer[] data = harness.data(count);
            System.out.println("READY");
            System.out.flush();
            if (!"GO".equals(in.readLine())) {
                return;
            }
            long start = System.nanoTime();
            long[] result = harness.run(keys, data);
            double seconds = (System.nanoTime() - start) / 1e9;
            System.out.println("DONE " + result[0] + " " + result[1] + " " + seconds);
            System.out.flush();
            for (String line; (line = in.readLine()) != null && !line.equals("EXIT"); ) {
                // the driver reads this process's CPU time, then closes our input
            }
        } finally {
            producer.destroy();
        }
    }
}
