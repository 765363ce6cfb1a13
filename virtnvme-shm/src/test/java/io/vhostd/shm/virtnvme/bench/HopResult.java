package io.vhostd.shm.virtnvme.bench;

import java.util.List;

/**
 * What one phase of one round measured, on both sides. The slave (submitter, child JVM) measures the round trips,
 * from just before {@code submit} to the moment it sees the CQE; the master (executor, parent JVM) is sampled by its
 * controller between the slave's "window started" and "result" messages. CPU times are nanoseconds; the process figure
 * is the whole JVM (every thread: GC, JIT, control), the hot figure only the polling thread.
 *
 * @param round round number, from 1
 * @param phase the phase's name
 * @param waitMode "poll" or "adaptive"
 * @param queueDepth commands outstanding (0: idle phase)
 * @param rateOpsPerSec offered rate, 0 = unpaced
 * @param ops round trips in the measured window
 * @param wallNs length of the slave's measured window
 * @param p50Ns median round trip
 * @param p99Ns 99th percentile
 * @param p999Ns 99.9th percentile
 * @param maxNs slowest round trip
 * @param slaveProcessCpuNs CPU of the whole slave JVM in the window
 * @param slaveHotCpuNs CPU of the slave's submitter thread in the window
 * @param masterProcessCpuNs CPU of the whole master JVM in its window
 * @param masterHotCpuNs CPU of the master's executor thread in its window
 * @param slaveAllocBytes bytes the submitter thread allocated in the window
 * @param masterAllocBytes bytes the executor thread allocated in its window
 * @param masterOps commands the executor completed in its window
 * @param slaveEventfdWrites SQ eventfd writes (wake-ups of the master) by the slave in the window
 * @param masterEventfdWrites CQ eventfd writes (wake-ups of the slave) by the master in its window
 * @param slaveSleeps times the submitter thread armed its wake-up and slept in poll(2)
 * @param masterSleeps times the executor thread did
 * @param slaveJfrHotEvents JFR allocation events (ObjectAllocationSample, InNewTLAB, OutsideTLAB) of the submitter
 *     thread in the window; -1 when JFR was off
 * @param masterJfrHotEvents the same for the executor thread
 * @param load1 the 1-minute load average when the phase started
 */
record HopResult(
        int round,
        String phase,
        String waitMode,
        int queueDepth,
        long rateOpsPerSec,
        long ops,
        long wallNs,
        long p50Ns,
        long p99Ns,
        long p999Ns,
        long maxNs,
        long slaveProcessCpuNs,
        long slaveHotCpuNs,
        long masterProcessCpuNs,
        long masterHotCpuNs,
        long slaveAllocBytes,
        long masterAllocBytes,
        long masterOps,
        long slaveEventfdWrites,
        long masterEventfdWrites,
        long slaveSleeps,
        long masterSleeps,
        long slaveJfrHotEvents,
        long masterJfrHotEvents,
        double load1) {
    /** Column names of {@link #toTsv()}, in order. */
    static final List<String> COLUMNS = List.of(
            "round",
            "phase",
            "wait_mode",
            "qd",
            "rate_ops_per_s",
            "ops",
            "wall_ns",
            "p50_ns",
            "p99_ns",
            "p999_ns",
            "max_ns",
            "slave_process_cpu_ns",
            "slave_hot_cpu_ns",
            "master_process_cpu_ns",
            "master_hot_cpu_ns",
            "slave_alloc_bytes",
            "master_alloc_bytes",
            "master_ops",
            "slave_eventfd_writes",
            "master_eventfd_writes",
            "slave_sleeps",
            "master_sleeps",
            "slave_jfr_hot_events",
            "master_jfr_hot_events",
            "load1");

    /** @return the header line of a TSV file of results */
    static String tsvHeader() {
        return String.join("\t", COLUMNS);
    }

    /** @return this result as one TSV line, columns as {@link #COLUMNS} */
    String toTsv() {
        return String.join(
                "\t",
                Integer.toString(round),
                phase,
                waitMode,
                Integer.toString(queueDepth),
                Long.toString(rateOpsPerSec),
                Long.toString(ops),
                Long.toString(wallNs),
                Long.toString(p50Ns),
                Long.toString(p99Ns),
                Long.toString(p999Ns),
                Long.toString(maxNs),
                Long.toString(slaveProcessCpuNs),
                Long.toString(slaveHotCpuNs),
                Long.toString(masterProcessCpuNs),
                Long.toString(masterHotCpuNs),
                Long.toString(slaveAllocBytes),
                Long.toString(masterAllocBytes),
                Long.toString(masterOps),
                Long.toString(slaveEventfdWrites),
                Long.toString(masterEventfdWrites),
                Long.toString(slaveSleeps),
                Long.toString(masterSleeps),
                Long.toString(slaveJfrHotEvents),
                Long.toString(masterJfrHotEvents),
                Double.toString(load1));
    }

    /**
     * @param line one line written by {@link #toTsv()}
     * @return the result
     * @throws IllegalArgumentException if the line has the wrong number of columns or a malformed number
     */
    static HopResult fromTsv(final String line) {
        final String[] f = line.split("\t", -1);
        if (f.length != COLUMNS.size()) {
            throw new IllegalArgumentException(
                    "expected " + COLUMNS.size() + " tab-separated columns, got " + f.length + ": " + line);
        }
        int i = 0;
        return new HopResult(
                Integer.parseInt(f[i++]),
                f[i++],
                f[i++],
                Integer.parseInt(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Long.parseLong(f[i++]),
                Double.parseDouble(f[i]));
    }

    /** @return round trips per second in the slave's window */
    double opsPerSec() {
        return wallNs == 0 ? 0 : ops * 1e9 / wallNs;
    }
}
