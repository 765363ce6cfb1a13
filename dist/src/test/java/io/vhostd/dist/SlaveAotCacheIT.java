package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The slaves' AOT cache (issue #4, {@code slave.aot_cache}), without a guest: a master on an empty cache directory
 * makes the cache once its first standby is ready (a training JVM that runs the standby's warm-up); a slave spawned
 * after that maps the cache file (the JVM started with {@code -XX:AOTCache}); a second master on the same directory
 * starts its first slave with it at once.
 */
@Tag("integration")
class SlaveAotCacheIT {

    private static final Duration READY_TIMEOUT = Duration.ofSeconds(60);
    /** The training runs at nice 19: on a loaded 2-CPU machine it takes a while. */
    private static final Duration TRAINING_TIMEOUT = Duration.ofMinutes(4);

    /** The master's "vhostd master ready" line: the serving slave's pid. */
    private static final Pattern MASTER_READY = Pattern.compile("vhostd master ready: .*slave pid (\\d+)");

    /** The master's "standby slave X (pid N) ready" line. */
    private static final Pattern STANDBY_READY = Pattern.compile("standby slave (\\S+) \\(pid (\\d+)\\) ready");

    private ItEnv env;
    private Path cacheDir;
    private MasterConfig config;

    @BeforeEach
    void writeConfig() throws IOException {
        env = ItEnv.forTest(getClass());
        config = MasterConfig.temporary(env, "SlaveAotCacheIT", 64L << 20, 1);
        cacheDir = config.socketDir().resolve("aot");
        Files.writeString(
                config.configFile(), config.yaml() + "slave: {aot_cache: " + cacheDir + ", standby_delay_ms: 0}\n");
    }

    @AfterEach
    void deleteFiles() throws IOException {
        config.deleteFiles();
    }

    @Test
    @Timeout(value = 8, unit = TimeUnit.MINUTES)
    void shouldStartSlavesWithTheCacheOnceItIsMade() throws Exception {
        Path cache;
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("first.log"))) {
            master.awaitReady(READY_TIMEOUT);
            GuestChecks.awaitLog(master, "slave AOT cache " + cacheDir, 1, TRAINING_TIMEOUT, null);
            List<Path> caches = listCaches();
            assertEquals(1, caches.size(), "one cache file in " + cacheDir + ": " + caches + "\n" + master.logTail());
            cache = caches.getFirst();
            String made = Files.readString(master.log());
            assertTrue(made.contains("slave AOT cache " + cache + " made in"), master.logTail());
            String name = cache.getFileName().toString();
            String training = Files.readString(cacheDir.resolve(name.substring(0, name.length() - 4) + ".log"));
            assertTrue(
                    training.contains("slave AOT training: warm-up: ") && training.contains(", 0 failed)"),
                    "the training ran the warm-up:\n" + training);
            try (Stream<Path> files = Files.list(cacheDir)) {
                List<Path> left = files.filter(f -> f.getFileName().toString().contains(".tmp"))
                        .toList();
                assertEquals(List.of(), left, "no temporary file left");
            }

            // the slave and the standby spawned before the cache existed run without it; a takeover spawns a standby
            // that has it
            Matcher ready = MASTER_READY.matcher(made);
            assertTrue(ready.find(), master.logTail());
            ProcessHandle serving =
                    ProcessHandle.of(Long.parseLong(ready.group(1))).orElseThrow();
            assertFalse(maps(serving.pid()).contains(cache.toString()), "spawned before the cache was made");
            serving.destroyForcibly();
            String log = GuestChecks.awaitLog(master, "standby slave", 2, READY_TIMEOUT, null);
            Matcher second = STANDBY_READY.matcher(log);
            assertTrue(second.find() && second.find(), master.logTail());
            long next = Long.parseLong(second.group(2));
            assertTrue(
                    maps(next).contains(cache.toString()),
                    "standby " + second.group(1) + " (pid " + next + ") does not map " + cache + "\n"
                            + master.logTail());
            assertTrue(master.terminate(Duration.ofSeconds(30)).isEmpty(), master.logTail());
        }
        // a second master on the same directory: its first slave starts with the cache, which is not made again
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("second.log"))) {
            master.awaitReady(READY_TIMEOUT);
            String log = GuestChecks.awaitLog(master, "vhostd master ready", 1, READY_TIMEOUT, null);
            Matcher ready = MASTER_READY.matcher(log);
            assertTrue(ready.find(), master.logTail());
            assertTrue(maps(Long.parseLong(ready.group(1))).contains(cache.toString()), master.logTail());
            assertEquals(List.of(cache), listCaches());
            assertTrue(master.terminate(Duration.ofSeconds(30)).isEmpty(), master.logTail());
        }
    }

    @Test
    @Timeout(value = 4, unit = TimeUnit.MINUTES)
    void shouldEndTheTrainingWhenTheMasterIsKilled() throws Exception {
        Files.writeString(
                config.configFile(), config.yaml() + "slave: {aot_cache: " + cacheDir + ", orphan_timeout_ms: 0}\n");
        String trainingNeedle = "-XX:AOTCacheOutput=" + cacheDir;
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("killed.log"))) {
            master.awaitReady(READY_TIMEOUT);
            long deadlineNs = System.nanoTime() + TRAINING_TIMEOUT.toNanos();
            while (VhostdMaster.processesMentioning(trainingNeedle).isEmpty()) {
                assertTrue(System.nanoTime() < deadlineNs, "no training JVM\n" + master.logTail());
                assertTrue(listCaches().isEmpty(), "the training ended before the test saw it\n" + master.logTail());
                Thread.sleep(20);
            }
            ProcessHandle.of(master.pid()).orElseThrow().destroyForcibly();
            // its stdin, a pipe from the master, reads end-of-file: it halts, and writes no cache
            deadlineNs = System.nanoTime() + READY_TIMEOUT.toNanos();
            while (!VhostdMaster.processesMentioning(trainingNeedle).isEmpty()) {
                assertTrue(
                        System.nanoTime() < deadlineNs,
                        "the training JVM outlived its master by " + READY_TIMEOUT + "\n" + master.logTail());
                Thread.sleep(100);
            }
            assertEquals(List.of(), listCaches(), "no cache from a training cut short");
        }
    }

    private List<Path> listCaches() throws IOException {
        try (Stream<Path> files = Files.list(cacheDir)) {
            return files.filter(p -> p.getFileName().toString().endsWith(".aot"))
                    .toList();
        }
    }

    private static String maps(long pid) throws IOException {
        return Files.readString(Path.of("/proc", Long.toString(pid), "maps"));
    }
}
