package io.vhostd.shm.control;

import java.util.ArrayList;
import java.util.List;

/**
 * Compiles the control channel's codec for the messages of a slave handover before a guest waits on them (issue #4,
 * control-channel.md "Rolling upgrade" and "Taking over a dead slave's controllers"). A process sends these messages a
 * few times in its life, so without this they are encoded and decoded by the interpreter inside the guest's pause:
 * measured here, ~2.5 ms for a {@code controller_released} and a {@code commit_controller} (16 carried requests per
 * queue) in their second use on an idle machine, 60 µs once the JIT compiled the codec; on two busy CPUs each hop of
 * a handover took 3 - 17 ms (docs/benchmarks.md, session 4). The master and every slave run it at start, before they
 * count as ready.
 */
public final class HandoverWarmup {
    /** Rounds over {@link #samples()}: enough for the JIT's C1 tier to compile Jackson's paths for these shapes. */
    public static final int ROUNDS = 1_500;

    private HandoverWarmup() {}

    /**
     * The handover's messages as a 2-queue controller with a guest connected sends them: 16 requests carried per queue,
     * a session with 2 memory regions, the rejoin of a restarted master.
     */
    public static List<ControlMessage> samples() {
        String name = "warm-up";
        List<ControlMessage.QpairRef> qpairs =
                List.of(new ControlMessage.QpairRef(0, 0, 1 << 20), new ControlMessage.QpairRef(1, 1 << 20, 1 << 20));
        ControlMessage.AddController controller =
                new ControlMessage.AddController(name, "disk0", 1, 1L << 30, 512, false, "WARM-UP", 2, 128, qpairs);
        List<ControlMessage.CarriedQueue> carried = new ArrayList<>();
        for (int q = 0; q < 2; q++) {
            List<Integer> heads = new ArrayList<>();
            List<Integer> states = new ArrayList<>();
            List<Integer> cids = new ArrayList<>();
            List<Integer> cidHeads = new ArrayList<>();
            for (int i = 0; i < 16; i++) {
                heads.add(i * 3 + q);
                states.add(i % 3 == 0 ? ControlMessage.CarriedQueue.FLUSH_AFTER_MASK | 1 : 1);
                cids.add(i + 16 * q);
                cidHeads.add(i * 3 + q);
            }
            carried.add(new ControlMessage.CarriedQueue(q, heads, states, cids, cidHeads));
        }
        List<ControlMessage.AdoptedFd> fds = new ArrayList<>();
        fds.add(new ControlMessage.AdoptedFd("connection", 0));
        fds.add(new ControlMessage.AdoptedFd("mem", 1));
        fds.add(new ControlMessage.AdoptedFd("mem", 2));
        for (int q = 0; q < 2; q++) {
            fds.add(new ControlMessage.AdoptedFd("kick", q));
            fds.add(new ControlMessage.AdoptedFd("call", q));
            fds.add(new ControlMessage.AdoptedFd("err", q));
        }
        fds.add(new ControlMessage.AdoptedFd("inflight", 0));
        // the messages inside a handover's pause first (release, commit, adoption, its answers), then the rest
        return List.of(
                new ControlMessage.ReleaseController(name, false),
                new ControlMessage.ControllerReleased(name, null, 1_000_000_000L, 1_000_200_000L, 0, carried),
                new ControlMessage.AdoptSession(name, fds),
                new ControlMessage.CommitController(name, carried),
                controller,
                new ControlMessage.SessionAdopted(name, null, 1_000_500_000L),
                new ControlMessage.ControllerListening(name),
                new ControlMessage.ControllerStats(name, 1 << 16),
                new ControlMessage.ControllerJournal(name, 1 << 18),
                new ControlMessage.PrepareController(controller),
                new ControlMessage.ControllerPrepared(name, null),
                new ControlMessage.CarryOver(name, carried),
                new ControlMessage.Custody(name, "call", 1),
                new ControlMessage.CustodyRelease(name, "call", 1),
                new ControlMessage.RegisterRegion(7, name, 1, 1L << 30, 0),
                new ControlMessage.Ack(7, null),
                new ControlMessage.SessionState(
                        name,
                        true,
                        0x1_5000_0044L,
                        0x8_0000_1203L,
                        List.of(
                                new ControlMessage.QueueState(0, 256, true, 1000, 990, 10),
                                new ControlMessage.QueueState(1, 256, true, 2000, 1990, 10))));
    }

    /**
     * Runs {@link #samples()} through the codec ({@link ControlChannel#warmUp}) for {@link #ROUNDS} rounds or until
     * {@code budgetNs} of wall time passed (it runs at a low priority: on a busy machine it gets little CPU); returns
     * the round trips made.
     */
    public static int run(long budgetNs) {
        return ControlChannel.warmUp(samples(), ROUNDS, budgetNs);
    }

    /** Whether {@code trips} round trips are all of {@link #run}'s: every sample, {@link #ROUNDS} times. */
    public static boolean complete(int trips) {
        return trips >= ROUNDS * samples().size();
    }

    /** {@link #run(long)} that also ends, after a round, once {@code stop} says so. */
    public static int run(long budgetNs, java.util.function.BooleanSupplier stop) {
        return ControlChannel.warmUp(samples(), ROUNDS, budgetNs, stop);
    }

    /** Nice value of {@link #startInBackground}'s thread: the lowest priority, it must not delay anyone. */
    public static final int BACKGROUND_NICE = 19;

    private static final System.Logger LOG = System.getLogger(HandoverWarmup.class.getName());

    /**
     * {@link #run} on a daemon thread "warm-up" at nice {@link #BACKGROUND_NICE} (guests may be running: after a master
     * restart, or while a standby finishes warming up); logs the round trips made when it ends. A failure is logged.
     */
    public static void startInBackground(long budgetNs) {
        startInBackground(budgetNs, () -> false, () -> {});
    }

    /**
     * {@link #startInBackground(long)} that also ends, after a round, once {@code stop} says so, and runs {@code
     * afterwards} on the same thread when it ended without being stopped.
     */
    public static void startInBackground(long budgetNs, java.util.function.BooleanSupplier stop, Runnable afterwards) {
        Thread.ofPlatform().name("warm-up").daemon(true).start(() -> {
            io.vhostd.shm.linux.Priority.niceCurrentThread(BACKGROUND_NICE);
            long startNs = System.nanoTime();
            try {
                int trips = run(budgetNs, stop);
                LOG.log(
                        System.Logger.Level.INFO,
                        "handover codec warm-up: " + trips + " round trips in the background in "
                                + (System.nanoTime() - startNs) / 1_000_000 + " ms"
                                + (complete(trips) ? "" : " (ended early)"));
                if (!stop.getAsBoolean()) {
                    afterwards.run();
                }
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "handover codec warm-up: " + e);
            }
        });
    }
}
