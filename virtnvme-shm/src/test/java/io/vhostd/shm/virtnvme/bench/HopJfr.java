package io.vhostd.shm.virtnvme.bench;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordedFrame;
import jdk.jfr.consumer.RecordedThread;
import jdk.jfr.consumer.RecordingFile;

/**
 * A JFR recording of allocations around one measured window, as a second witness next to the allocation counter:
 * {@code jdk.ObjectAllocationSample} (unthrottled here), {@code jdk.ObjectAllocationInNewTLAB} (a thread took a new
 * TLAB) and {@code jdk.ObjectAllocationOutsideTLAB}, with stack traces. A hot thread that allocates nothing produces
 * none of them. TLAB-based sampling sees an allocation that refills or bypasses a TLAB, so a thread that
 * allocates a few bytes once may show no event; the allocation counter is the exact witness. The file stays for {@code jfr print --events jdk.ObjectAllocationSample FILE}.
 */
final class HopJfr {
    static final List<String> EVENTS =
            List.of("jdk.ObjectAllocationSample", "jdk.ObjectAllocationInNewTLAB", "jdk.ObjectAllocationOutsideTLAB");

    private final Recording recording = new Recording();
    private final Path file;

    /** Starts recording. @param file where {@link #stopAndCount} dumps the recording */
    HopJfr(final Path file) {
        this.file = file;
        recording.setName("virtnvme-hop-allocations");
        recording.setToDisk(true);
        for (final String event : EVENTS) {
            recording.enable(event).withStackTrace();
        }
        // every allocation sample, not the default 150 per second: a quiet thread must show up if it allocates at all
        recording.enable("jdk.ObjectAllocationSample").with("throttle", "off");
        recording.start();
    }

    /**
     * Stops, dumps and closes the recording, then counts the allocation events of {@code threadName} that started in
     * [{@code from}, {@code to}]; prints the top frames of the first few to standard error.
     *
     * @return allocation events recorded on that thread in the window
     */
    long stopAndCount(final String threadName, final Instant from, final Instant to) {
        try {
            recording.stop();
            recording.dump(file);
            recording.close();
            long count = 0;
            for (final RecordedEvent event : RecordingFile.readAllEvents(file)) {
                final RecordedThread thread = event.getThread();
                if (thread == null
                        || !threadName.equals(thread.getJavaName())
                        || event.getStartTime().isBefore(from)
                        || event.getStartTime().isAfter(to)) {
                    continue;
                }
                if (count++ < 3) {
                    System.err.println("jfr: " + threadName + " allocated: " + describe(event));
                }
            }
            return count;
        } catch (IOException e) {
            throw new UncheckedIOException("JFR recording " + file, e);
        }
    }

    private static String describe(final RecordedEvent event) {
        final StringBuilder s = new StringBuilder(event.getEventType().getName());
        if (event.hasField("objectClass") && event.getClass("objectClass") != null) {
            s.append(' ').append(event.getClass("objectClass").getName());
        }
        if (event.getStackTrace() != null) {
            final List<RecordedFrame> frames = event.getStackTrace().getFrames();
            for (int i = 0; i < Math.min(4, frames.size()); i++) {
                s.append("\n    at ")
                        .append(frames.get(i).getMethod().getType().getName())
                        .append('.')
                        .append(frames.get(i).getMethod().getName())
                        .append(':')
                        .append(frames.get(i).getLineNumber());
            }
        }
        return s.toString();
    }
}
