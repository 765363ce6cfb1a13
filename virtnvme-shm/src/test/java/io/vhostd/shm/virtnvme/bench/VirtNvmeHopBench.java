package io.vhostd.shm.virtnvme.bench;

import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;

/**
 * The VirtNvme hop benchmark, two processes, null device (issue #3 "Performance"). This JVM plays the master: it
 * creates the qpair memfd and the two eventfds, formats the qpair, starts a child JVM (same java, same JVM options,
 * same class path) that plays the slave, passes it the three descriptors over a unix socket with {@code SCM_RIGHTS},
 * and runs the executor ({@link HopExecutor}) while the child submits ({@link HopSubmitter}). One run of this class is
 * one round; {@code scripts/bench-virtnvme.sh} runs several and {@link HopReport} takes the medians.
 *
 * <p>A unix socket at an abstract address carries the descriptors rather than a socketpair: {@link ProcessBuilder}
 * closes every inherited descriptor but 0, 1 and 2 in the child, so the child connects instead.
 *
 * <pre>
 * java --enable-native-access=ALL-UNNAMED --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED -XX:+UseZGC \
 *     -cp CLASSPATH io.vhostd.shm.virtnvme.bench.VirtNvmeHopBench [--round N] [--out FILE.tsv] [--phases a,b]
 *     [--scale F] [--idle-seconds S] [--max-phase-seconds S] [--spin-us US] [--depth N] [--jfr DIR]
 *     [--child-taskset CPUS]
 * </pre>
 */
public final class VirtNvmeHopBench {
    /** PHASE message words. */
    static final int PHASE_WAIT_MODE = 1;

    static final int PHASE_QUEUE_DEPTH = 2;
    static final int PHASE_WARMUP_OPS = 3;
    static final int PHASE_OPS = 4;
    static final int PHASE_RATE = 5;
    static final int PHASE_MAX_DURATION_NS = 6;
    static final int PHASE_SPIN_NS = 7;
    static final int PHASE_JFR = 8;

    private static final String CHILD_FLAG = "--child";
    private static final List<String> OPTIONS = List.of(
            "--round",
            "--out",
            "--phases",
            "--scale",
            "--idle-seconds",
            "--max-phase-seconds",
            "--spin-us",
            "--depth",
            "--jfr",
            "--child-taskset");
    private static final int MAX_SEGMENTS = 4;
    private static final long PAGE_BYTES = 4096;
    private static final long CHILD_CONNECT_TIMEOUT_MS = 60_000;
    private static final long NS_PER_SECOND = 1_000_000_000L;

    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    private static final com.sun.management.OperatingSystemMXBean OS =
            (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();

    private VirtNvmeHopBench() {}

    /** Options of one round. */
    private record Options(
            int round,
            Path out,
            List<String> phases,
            double scale,
            long idleSeconds,
            long maxPhaseSeconds,
            long spinUs,
            int depth,
            Path jfrDirectory,
            String childTaskset) {}

    /**
     * @param args see the class comment; {@code --child SOCKET [--jfr DIR] [--round N]} is the child's entry point
     * @throws Exception if the round fails; the child is killed
     */
    public static void main(final String[] args) throws Exception {
        if (args.length > 0 && args[0].equals(CHILD_FLAG)) {
            HopSlave.run(args[1], optionalPath(args, "--jfr"), Integer.parseInt(option(args, "--round", "1")));
            return;
        }
        final Options options = parse(args);
        final List<HopResult> results = runRound(options);
        if (options.out() != null) {
            final List<String> lines = new ArrayList<>();
            if (!Files.exists(options.out()) || Files.size(options.out()) == 0) {
                lines.add(HopResult.tsvHeader());
            }
            results.forEach(r -> lines.add(r.toTsv()));
            Files.write(options.out(), lines, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        }
    }

    /** The phases of a round, in order; {@code scale} multiplies the op counts (a quick run: 0.1). */
    static List<HopPhase> phases(
            final double scale, final long idleSeconds, final long maxPhaseSeconds, final boolean jfr) {
        final long maxNs = maxPhaseSeconds * NS_PER_SECOND;
        final List<HopPhase> phases = new ArrayList<>(List.of(
                new HopPhase("poll-qd1", HopPhase.WAIT_POLL, 1, ops(500_000, scale), ops(1_000_000, scale), 0, maxNs),
                // the allocation window of the issue: 10M steady-state round trips after the warm-up
                new HopPhase(
                        "poll-qd32", HopPhase.WAIT_POLL, 32, ops(2_000_000, scale), ops(10_000_000, scale), 0, maxNs),
                new HopPhase(
                        "adaptive-qd1",
                        HopPhase.WAIT_ADAPTIVE,
                        1,
                        ops(200_000, scale),
                        ops(1_000_000, scale),
                        0,
                        maxNs),
                new HopPhase(
                        "adaptive-qd32",
                        HopPhase.WAIT_ADAPTIVE,
                        32,
                        ops(1_000_000, scale),
                        ops(5_000_000, scale),
                        0,
                        maxNs),
                new HopPhase(
                        "adaptive-qd1-10k",
                        HopPhase.WAIT_ADAPTIVE,
                        1,
                        ops(30_000, scale),
                        ops(50_000, scale),
                        10_000,
                        maxNs),
                new HopPhase(
                        "adaptive-qd1-1k",
                        HopPhase.WAIT_ADAPTIVE,
                        1,
                        ops(3_000, scale),
                        ops(5_000, scale),
                        1_000,
                        maxNs),
                new HopPhase("idle", HopPhase.WAIT_ADAPTIVE, 0, 0, 0, 0, idleSeconds * NS_PER_SECOND)));
        if (jfr) {
            // the allocation window again, with JFR recording both hot threads (JFR's own start-up perturbs the timing)
            phases.add(new HopPhase(
                    "poll-qd32-jfr", HopPhase.WAIT_POLL, 32, ops(2_000_000, scale), ops(10_000_000, scale), 0, maxNs));
        }
        return phases;
    }

    static HopPhase phaseFromWords(final long[] words) {
        return new HopPhase(
                "phase",
                (int) words[PHASE_WAIT_MODE],
                (int) words[PHASE_QUEUE_DEPTH],
                words[PHASE_WARMUP_OPS],
                words[PHASE_OPS],
                words[PHASE_RATE],
                words[PHASE_MAX_DURATION_NS]);
    }

    private static long[] phaseWords(final HopPhase phase, final long spinNs, final boolean jfr) {
        final long[] words = new long[HopChannel.WORDS];
        words[0] = HopChannel.PHASE;
        words[PHASE_WAIT_MODE] = phase.waitMode();
        words[PHASE_QUEUE_DEPTH] = phase.queueDepth();
        words[PHASE_WARMUP_OPS] = phase.warmupOps();
        words[PHASE_OPS] = phase.ops();
        words[PHASE_RATE] = phase.rateOpsPerSec();
        words[PHASE_MAX_DURATION_NS] = phase.maxDurationNs();
        words[PHASE_SPIN_NS] = spinNs;
        words[PHASE_JFR] = jfr ? 1 : 0;
        return words;
    }

    private static List<HopResult> runRound(final Options options) throws IOException, InterruptedException {
        final List<HopPhase> all = phases(
                options.scale(), options.idleSeconds(), options.maxPhaseSeconds(), options.jfrDirectory() != null);
        final List<HopPhase> selected = options.phases().isEmpty()
                ? all
                : all.stream().filter(p -> options.phases().contains(p.name())).toList();
        if (selected.isEmpty()) {
            throw new IllegalArgumentException("no phase matches --phases " + options.phases() + "; phases: "
                    + all.stream().map(HopPhase::name).toList());
        }
        final long regionBytes = VirtNvmeDescriptor.lengthBytes(options.depth(), MAX_SEGMENTS);
        final long mapLengthBytes = (regionBytes + PAGE_BYTES - 1) / PAGE_BYTES * PAGE_BYTES;
        final long spinNs = options.spinUs() * 1000;
        final int memfd = Memfd.memfd_create("vhostd-virtnvme-hop", Memfd.MFD_CLOEXEC);
        final int sqEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        final int cqEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        Process child = null;
        try (Arena arena = Arena.ofShared()) {
            Unistd.ftruncate(memfd, mapLengthBytes);
            final MemorySegment memory =
                    Mman.mmap(mapLengthBytes, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, memfd, 0, arena);
            final VirtNvmeQueuePair qp = VirtNvmeQueuePair.format(memory, 0, options.depth(), MAX_SEGMENTS);

            // abstract namespace (leading NUL): nothing to clean up; the child gets the name without the NUL (argv)
            final String socketName =
                    "vhostd-virtnvme-hop-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
            final int listenFd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
            final int connFd;
            try {
                Socket.bind(listenFd, "\0" + socketName);
                Socket.listen(listenFd, 1);
                child = startChild(socketName, options);
                connFd = acceptChild(listenFd, child);
            } finally {
                Unistd.close(listenFd);
            }
            try (HopChannel channel = new HopChannel(connFd)) {
                final long childPid = Socket.getpeercred(connFd).pid();
                if (childPid != child.pid()) {
                    throw new IllegalStateException(
                            "control socket peer is pid " + childPid + ", not the child " + child.pid());
                }
                final long[] hello = new long[HopChannel.WORDS];
                hello[0] = HopChannel.HELLO;
                hello[1] = mapLengthBytes;
                // order: HELLO_FD_MEMFD, HELLO_FD_SQ_EVENTFD, HELLO_FD_CQ_EVENTFD
                channel.send(hello, memfd, sqEventFd, cqEventFd);

                final HopExecutor executor = new HopExecutor(qp, sqEventFd, cqEventFd, spinNs);
                final Thread executorThread =
                        Thread.ofPlatform().name(HopExecutor.THREAD_NAME).start(executor);
                try {
                    final List<HopResult> results = new ArrayList<>();
                    for (final HopPhase phase : selected) {
                        results.add(runPhase(options, channel, executor, executorThread.threadId(), phase, spinNs));
                    }
                    channel.send(new long[] {HopChannel.EXIT});
                    if (!child.waitFor(30, TimeUnit.SECONDS) || child.exitValue() != 0) {
                        throw new IllegalStateException("child did not exit cleanly");
                    }
                    return results;
                } finally {
                    // before the arena unmaps the qpair under it
                    executor.stop();
                    executorThread.join();
                }
            }
        } finally {
            if (child != null && child.isAlive()) {
                child.destroyForcibly();
            }
            Unistd.close(memfd);
            Unistd.close(sqEventFd);
            Unistd.close(cqEventFd);
        }
    }

    private static HopResult runPhase(
            final Options options,
            final HopChannel channel,
            final HopExecutor executor,
            final long executorThreadId,
            final HopPhase phase,
            final long spinNs) {
        final boolean jfr = phase.name().endsWith("-jfr");
        final double load1 = load1();
        executor.mode(phase.waitMode());
        // the child's sleep warm-up first (HopSubmitter.SLEEP_WARMUP_OPS): no spin on either side until it is over
        executor.spinDisabled(phase.waitMode() == HopPhase.WAIT_ADAPTIVE && !phase.isIdle());
        channel.send(phaseWords(phase, spinNs, jfr));
        final long[] words = new long[HopChannel.WORDS];
        channel.expect(HopChannel.SLEEP_WARMED, words, 0);
        executor.spinDisabled(false);
        channel.expect(HopChannel.WINDOW_START, words, 0);
        final Instant windowFrom = Instant.now();
        final HopJfr recording =
                jfr ? new HopJfr(options.jfrDirectory().resolve("master-round" + options.round() + ".jfr")) : null;
        final long ops0 = executor.completed();
        final long eventfdWrites0 = executor.eventfdWrites();
        final long sleeps0 = executor.sleeps();
        final long processCpu0 = OS.getProcessCpuTime();
        final long hotCpu0 = THREADS.getThreadCpuTime(executorThreadId);
        final long alloc0 = THREADS.getThreadAllocatedBytes(executorThreadId);
        channel.expect(HopChannel.RESULT, words, 0);
        final long alloc1 = THREADS.getThreadAllocatedBytes(executorThreadId);
        final long hotCpu1 = THREADS.getThreadCpuTime(executorThreadId);
        final long processCpu1 = OS.getProcessCpuTime();
        final long ops1 = executor.completed();
        final Instant windowTo = Instant.now();
        executor.mode(HopPhase.WAIT_ADAPTIVE);
        final long masterJfr =
                recording == null ? -1 : recording.stopAndCount(HopExecutor.THREAD_NAME, windowFrom, windowTo);
        final HopResult r = new HopResult(
                options.round(),
                phase.name(),
                phase.waitModeName(),
                phase.queueDepth(),
                phase.rateOpsPerSec(),
                words[HopChannel.RESULT_OPS],
                words[HopChannel.RESULT_WALL_NS],
                words[HopChannel.RESULT_P50_NS],
                words[HopChannel.RESULT_P99_NS],
                words[HopChannel.RESULT_P999_NS],
                words[HopChannel.RESULT_MAX_NS],
                words[HopChannel.RESULT_PROCESS_CPU_NS],
                words[HopChannel.RESULT_HOT_CPU_NS],
                processCpu1 - processCpu0,
                hotCpu1 - hotCpu0,
                words[HopChannel.RESULT_ALLOC_BYTES],
                alloc1 - alloc0,
                ops1 - ops0,
                words[HopChannel.RESULT_EVENTFD_WRITES],
                executor.eventfdWrites() - eventfdWrites0,
                words[HopChannel.RESULT_SLEEPS],
                executor.sleeps() - sleeps0,
                words[HopChannel.RESULT_JFR_HOT_EVENTS],
                masterJfr,
                load1);
        System.out.println(describe(r));
        return r;
    }

    private static String describe(final HopResult r) {
        final double wallS = r.wallNs() / 1e9;
        return String.format(
                Locale.ROOT,
                "round %d %-17s ops=%d (%.1f s, %.0f ops/s) p50=%d p99=%d p99.9=%d max=%d ns | CPU s slave %.3f"
                        + " (hot %.3f) master %.3f (hot %.3f) | alloc B slave %d master %d (%d ops) | eventfd writes"
                        + " SQ %d CQ %d | sleeps slave %d master %d | jfr slave %d master %d | load1 %.2f",
                r.round(),
                r.phase(),
                r.ops(),
                wallS,
                r.opsPerSec(),
                r.p50Ns(),
                r.p99Ns(),
                r.p999Ns(),
                r.maxNs(),
                r.slaveProcessCpuNs() / 1e9,
                r.slaveHotCpuNs() / 1e9,
                r.masterProcessCpuNs() / 1e9,
                r.masterHotCpuNs() / 1e9,
                r.slaveAllocBytes(),
                r.masterAllocBytes(),
                r.masterOps(),
                r.slaveEventfdWrites(),
                r.masterEventfdWrites(),
                r.slaveSleeps(),
                r.masterSleeps(),
                r.slaveJfrHotEvents(),
                r.masterJfrHotEvents(),
                r.load1());
    }

    private static Process startChild(final String socketName, final Options options) throws IOException {
        final List<String> command = new ArrayList<>();
        if (options.childTaskset() != null) {
            command.addAll(List.of("taskset", "-c", options.childTaskset()));
        }
        command.add(ProcessHandle.current()
                .info()
                .command()
                .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        command.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        command.addAll(List.of("-cp", System.getProperty("java.class.path"), VirtNvmeHopBench.class.getName()));
        command.addAll(List.of(CHILD_FLAG, socketName, "--round", Integer.toString(options.round())));
        if (options.jfrDirectory() != null) {
            command.addAll(List.of("--jfr", options.jfrDirectory().toString()));
        }
        return new ProcessBuilder(command).inheritIO().start();
    }

    private static int acceptChild(final int listenFd, final Process child) {
        final long deadlineNs = System.nanoTime() + CHILD_CONNECT_TIMEOUT_MS * 1_000_000;
        while (System.nanoTime() - deadlineNs < 0) {
            if ((Poll.poll(listenFd, Poll.POLLIN, 200) & Poll.POLLIN) != 0) {
                final int fd = Socket.accept(listenFd);
                if (fd >= 0) {
                    return fd;
                }
            }
            if (!child.isAlive()) {
                throw new IllegalStateException("child JVM exited with " + child.exitValue() + " before connecting");
            }
        }
        throw new IllegalStateException("child JVM did not connect within " + CHILD_CONNECT_TIMEOUT_MS + " ms");
    }

    private static double load1() {
        try {
            return Double.parseDouble(Files.readString(Path.of("/proc/loadavg")).split(" ")[0]);
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }

    private static long ops(final long n, final double scale) {
        return Math.max(1, Math.round(n * scale));
    }

    private static Options parse(final String[] args) {
        for (int i = 0; i < args.length; i += 2) {
            if (!OPTIONS.contains(args[i]) || i + 1 >= args.length) {
                throw new IllegalArgumentException(
                        "unknown option or missing value: " + args[i] + "; options: " + OPTIONS);
            }
        }
        final String phases = option(args, "--phases", "");
        return new Options(
                Integer.parseInt(option(args, "--round", "1")),
                optionalPath(args, "--out"),
                phases.isEmpty() ? List.of() : Arrays.asList(phases.split(",")),
                Double.parseDouble(option(args, "--scale", "1")),
                Long.parseLong(option(args, "--idle-seconds", "10")),
                Long.parseLong(option(args, "--max-phase-seconds", "30")),
                Long.parseLong(option(args, "--spin-us", System.getProperty("vhostd.poll.spin.us", "20"))),
                Integer.parseInt(option(args, "--depth", "64")),
                optionalPath(args, "--jfr"),
                option(args, "--child-taskset", null));
    }

    private static String option(final String[] args, final String name, final String fallback) {
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals(name)) {
                return args[i + 1];
            }
        }
        return fallback;
    }

    private static Path optionalPath(final String[] args, final String name) {
        final String value = option(args, name, null);
        return value == null ? null : Path.of(value);
    }
}
