package io.vhostd.slave;

/**
 * The training run of the slaves' AOT cache (issue #4; JDK 25 {@code -XX:AOTCacheOutput}, JEPs 483, 514 and 515): the
 * master runs this class once per slave build and JVM options, with the slave's own command line, and the JVM writes
 * the classes it loaded and linked and the method profiles it gathered into the cache at exit. The workload is the
 * standby's warm-up ({@link SlaveWarmup#run}: class preloading, the control codec, the journal, two handover
 * rehearsals through the data path) and then all the rounds of the handover's control codec, which a slave needs first
 * in a handover. Touches no master, no device, no guest: scratch memfds only. Prints the warm-up's summary and exits
 * with status 0 (a warm-up never fails: a step that fails is logged and skipped). Its stdin is a pipe from the master:
 * at end-of-file (the master died) it halts at once with status 3, and no cache is written.
 */
public final class SlaveAotTraining {
    /** How long the codec rounds may take (wall time). */
    private static final long CODEC_BUDGET_NS = 60_000_000_000L;

    private SlaveAotTraining() {}

    public static void main(String[] args) {
        // stdin is a pipe from the master: end-of-file means the master is gone, and so is the point of the run
        Thread.ofPlatform().name("master-watch").daemon(true).start(() -> {
            try {
                while (System.in.read() >= 0) {
                    // the master writes nothing: wait for end-of-file
                }
            } catch (java.io.IOException e) {
                // as end-of-file
            }
            Runtime.getRuntime().halt(3);
        });
        String summary = SlaveWarmup.run(() -> false);
        // the codec rounds a standby goes on with in the background after its hello, here to the end
        SlaveWarmup.atWork();
        long startNs = System.nanoTime();
        int trips = io.vhostd.shm.control.HandoverWarmup.run(CODEC_BUDGET_NS);
        System.out.println("slave AOT training: " + summary + "; control messages (" + trips + " round trips) in "
                + (System.nanoTime() - startNs) / 1_000_000 + " ms");
        // the background codec warm-up a slave starts after its hello is not part of the run: System.exit ends it
        System.exit(0);
    }
}
