package io.vhostd.shm.stats;

/**
 * One counter set of a queue, a controller or a bdev (the counter list of {@code bdev_get_iostat}, spec/stats.md
 * "Counter block"). Every field counts since the writer started, except {@code queueDepth} (now). Ticks are
 * nanoseconds of CLOCK_MONOTONIC.
 *
 * @param numReadOps completed virtio-blk IN requests
 * @param bytesRead their data bytes
 * @param numWriteOps completed OUT requests
 * @param bytesWritten their data bytes
 * @param numFlushOps completed FLUSH requests
 * @param numUnmapOps completed DISCARD requests
 * @param bytesUnmapped bytes discarded
 * @param numWriteZeroesOps completed WRITE_ZEROES requests
 * @param bytesWriteZeroes bytes zeroed
 * @param readLatencyTicks sum over completed reads of (guest ring fetch → used-ring publish), ns
 * @param writeLatencyTicks same for writes
 * @param flushLatencyTicks same for flushes
 * @param unmapLatencyTicks same for discards
 * @param writeZeroesLatencyTicks same for write-zeroes
 * @param ioErrors completed requests whose virtio-blk status is not OK
 * @param queueDepth requests fetched and not yet published (now)
 * @param ioTimeTicks time with queueDepth &gt; 0, ns (Linux diskstats field 10)
 * @param weightedIoTimeTicks integral of queueDepth over time, ns (diskstats field 11)
 */
public record IoCounters(
        long numReadOps,
        long bytesRead,
        long numWriteOps,
        long bytesWritten,
        long numFlushOps,
        long numUnmapOps,
        long bytesUnmapped,
        long numWriteZeroesOps,
        long bytesWriteZeroes,
        long readLatencyTicks,
        long writeLatencyTicks,
        long flushLatencyTicks,
        long unmapLatencyTicks,
        long writeZeroesLatencyTicks,
        long ioErrors,
        long queueDepth,
        long ioTimeTicks,
        long weightedIoTimeTicks) {

    /** All zero. */
    public static final IoCounters ZERO = new IoCounters(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);

    /** These counters with {@code queueDepth} replaced (a removed controller has none in flight). */
    public IoCounters withQueueDepth(long depth) {
        return new IoCounters(
                numReadOps,
                bytesRead,
                numWriteOps,
                bytesWritten,
                numFlushOps,
                numUnmapOps,
                bytesUnmapped,
                numWriteZeroesOps,
                bytesWriteZeroes,
                readLatencyTicks,
                writeLatencyTicks,
                flushLatencyTicks,
                unmapLatencyTicks,
                writeZeroesLatencyTicks,
                ioErrors,
                depth,
                ioTimeTicks,
                weightedIoTimeTicks);
    }

    /** Field-wise sum (queue_depth too: the depth of a controller is the sum of its queues'). */
    public IoCounters plus(IoCounters o) {
        return new IoCounters(
                numReadOps + o.numReadOps,
                bytesRead + o.bytesRead,
                numWriteOps + o.numWriteOps,
                bytesWritten + o.bytesWritten,
                numFlushOps + o.numFlushOps,
                numUnmapOps + o.numUnmapOps,
                bytesUnmapped + o.bytesUnmapped,
                numWriteZeroesOps + o.numWriteZeroesOps,
                bytesWriteZeroes + o.bytesWriteZeroes,
                readLatencyTicks + o.readLatencyTicks,
                writeLatencyTicks + o.writeLatencyTicks,
                flushLatencyTicks + o.flushLatencyTicks,
                unmapLatencyTicks + o.unmapLatencyTicks,
                writeZeroesLatencyTicks + o.writeZeroesLatencyTicks,
                ioErrors + o.ioErrors,
                queueDepth + o.queueDepth,
                ioTimeTicks + o.ioTimeTicks,
                weightedIoTimeTicks + o.weightedIoTimeTicks);
    }

    /**
     * Field-wise difference from a baseline (bdev_reset_iostat); {@code queueDepth} is this one's (a gauge, not
     * reset).
     */
    public IoCounters minus(IoCounters base) {
        return new IoCounters(
                numReadOps - base.numReadOps,
                bytesRead - base.bytesRead,
                numWriteOps - base.numWriteOps,
                bytesWritten - base.bytesWritten,
                numFlushOps - base.numFlushOps,
                numUnmapOps - base.numUnmapOps,
                bytesUnmapped - base.bytesUnmapped,
                numWriteZeroesOps - base.numWriteZeroesOps,
                bytesWriteZeroes - base.bytesWriteZeroes,
                readLatencyTicks - base.readLatencyTicks,
                writeLatencyTicks - base.writeLatencyTicks,
                flushLatencyTicks - base.flushLatencyTicks,
                unmapLatencyTicks - base.unmapLatencyTicks,
                writeZeroesLatencyTicks - base.writeZeroesLatencyTicks,
                ioErrors - base.ioErrors,
                queueDepth,
                ioTimeTicks - base.ioTimeTicks,
                weightedIoTimeTicks - base.weightedIoTimeTicks);
    }
}
