// Logs awkward messages through SLF4J, as the KCL does (tests/unit/consumer/test_logback.py).
public class LogLines {
    public static void main(String[] args) {
        org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger("software.amazon.kinesis.Test");
        org.slf4j.MDC.put("ShardId", "shardId-000000000001");
        log.debug("debug line");
        log.info("plain {}", 1);
        log.warn("quote \" backslash \\ line\nnext\ttab\u0001 \u00e9");
        log.error("failed", new RuntimeException("boom \"x\" \\"));
    }
}
