package io.vhostd.master.hugepages;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * The kernel's pool of 2 MiB huge pages, global or of one NUMA node, as procfs and sysfs show it.
 *
 * <ul>
 *   <li>global pool: {@code /proc/sys/vm/nr_hugepages} when the default huge page size ({@code Hugepagesize} in {@code
 *       /proc/meminfo}) is 2 MiB, else {@code /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages}; free pages in
 *       {@code /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages}
 *   <li>node N: {@code /sys/devices/system/node/nodeN/hugepages/hugepages-2048kB/{nr,free}_hugepages}
 * </ul>
 *
 * <p>{@link #reserve} raises the pool by the pages missing for {@code N} free ones and reads back what the kernel gave:
 * it may give fewer (fragmented memory) or refuse the write (not root), and the {@link Reservation} says so. {@link
 * #release} lowers the pool by what {@link #reserve} added, so a stopped master leaves {@code nr_hugepages} as it found
 * it (unless someone else changed it meanwhile: it never lowers below what others added).
 *
 * <p>The roots are injectable for tests: the constructor's, else the system properties {@value
 * #PROCFS_ROOT_PROPERTY} (default {@code /proc}) and {@value #SYSFS_ROOT_PROPERTY} (default {@code /sys}).
 */
public final class HugepagePool {
    private static final System.Logger LOG = System.getLogger(HugepagePool.class.getName());

    /** System property: the procfs mount point (default {@code /proc}). */
    public static final String PROCFS_ROOT_PROPERTY = "vhostd.procfs.root";

    /** System property: the sysfs mount point (default {@code /sys}); shared with the NVMe probe. */
    public static final String SYSFS_ROOT_PROPERTY = "vhostd.sysfs.root";

    /** The pool's directory name in sysfs. */
    static final String SIZE_DIR = "hugepages-2048kB";

    /** How the pool's files are read and written (the kernel's files; tests substitute a fake kernel). */
    public interface PoolFiles {
        /** The decimal number in {@code file}. */
        long read(Path file) throws IOException;

        /** Writes {@code value} to {@code file}, as {@code echo value > file}. */
        void write(Path file, long value) throws IOException;
    }

    /** Plain file reads and writes: what procfs and sysfs need. */
    public static final PoolFiles KERNEL_FILES = new PoolFiles() {
        @Override
        public long read(Path file) throws IOException {
            String text = Files.readString(file, StandardCharsets.US_ASCII).strip();
            try {
                return Long.parseLong(text);
            } catch (NumberFormatException e) {
                throw new IOException(file + ": not a number: '" + text + "'", e);
            }
        }

        @Override
        public void write(Path file, long value) throws IOException {
            Files.writeString(file, value + "\n", StandardCharsets.US_ASCII);
        }
    };

    /**
     * What {@link #reserve} got.
     *
     * @param requested the pages asked for
     * @param node the NUMA node whose pool was used, or -1 for the global pool
     * @param poolFile the {@code nr_hugepages} file of that pool
     * @param poolBefore the pool's size before
     * @param added pages this reservation added to the pool ({@link #release} removes them)
     * @param free free pages after raising the pool
     * @param shortfallReason null when {@code free >= requested}, else why not
     */
    public record Reservation(
            int requested, int node, Path poolFile, long poolBefore, long added, long free, String shortfallReason) {
        /** The pages available to the arena: the free pages, at most the requested ones. */
        public long reserved() {
            return Math.min(requested, free);
        }
    }

    private final Path procRoot;
    private final Path sysRoot;
    private final PoolFiles files;

    /** The host's pool (or the one the system properties point at). */
    public HugepagePool() {
        this(
                Path.of(System.getProperty(PROCFS_ROOT_PROPERTY, "/proc")),
                Path.of(System.getProperty(SYSFS_ROOT_PROPERTY, "/sys")),
                KERNEL_FILES);
    }

    /**
     * @param procRoot where procfs is mounted
     * @param sysRoot where sysfs is mounted
     * @param files how to read and write the pool's files
     */
    public HugepagePool(Path procRoot, Path sysRoot, PoolFiles files) {
        this.procRoot = procRoot;
        this.sysRoot = sysRoot;
        this.files = files;
    }

    /** The {@code nr_hugepages} file of the pool of {@code node} (-1: global). */
    public Path poolFile(int node) {
        if (node >= 0) {
            return nodeDir(node).resolve("nr_hugepages");
        }
        Path proc = procRoot.resolve("sys").resolve("vm").resolve("nr_hugepages");
        return defaultSizeIs2Mb() ? proc : globalDir().resolve("nr_hugepages");
    }

    /** The {@code free_hugepages} file of the pool of {@code node} (-1: global). */
    public Path freeFile(int node) {
        return (node >= 0 ? nodeDir(node) : globalDir()).resolve("free_hugepages");
    }

    /** Free 2 MiB pages in the pool of {@code node} (-1: global). */
    public long freePages(int node) throws IOException {
        return files.read(freeFile(node));
    }

    /** The size of the pool of {@code node} (-1: global). */
    public long poolPages(int node) throws IOException {
        return files.read(poolFile(node));
    }

    /**
     * Makes sure {@code pages} huge pages are free, raising the pool by the missing ones. Never throws for what the
     * host refuses: the reservation says what was got and why not more.
     *
     * @param node a NUMA node, or -1 for the global pool
     */
    public Reservation reserve(int pages, int node) {
        Path pool = poolFile(node);
        long freeBefore;
        long before;
        try {
            freeBefore = files.read(freeFile(node));
            before = files.read(pool);
        } catch (NoSuchFileException e) {
            return new Reservation(
                    pages, node, pool, 0, 0, 0, "no 2 MiB huge page pool: " + e.getFile() + " does not exist");
        } catch (IOException e) {
            return new Reservation(pages, node, pool, 0, 0, 0, "cannot read the huge page pool: " + e);
        }
        if (freeBefore >= pages) {
            return new Reservation(pages, node, pool, before, 0, freeBefore, null);
        }
        long wanted = before + (pages - freeBefore);
        try {
            files.write(pool, wanted);
        } catch (IOException e) {
            String why = e instanceof java.nio.file.AccessDeniedException
                    ? "permission denied (the master is not root)"
                    : e.toString();
            return new Reservation(
                    pages,
                    node,
                    pool,
                    before,
                    0,
                    freeBefore,
                    "cannot raise " + pool + " from " + before + " to " + wanted + ": " + why + "; " + freeBefore
                            + " free");
        }
        long after;
        long free;
        try {
            after = files.read(pool);
            free = files.read(freeFile(node));
        } catch (IOException e) {
            return new Reservation(pages, node, pool, before, 0, freeBefore, "cannot read the pool back: " + e);
        }
        long added = Math.max(0, after - before);
        String shortfall = null;
        if (free < pages) {
            shortfall = "asked the kernel for " + (wanted - before) + " more huge pages (" + pool + " = " + wanted
                    + "), it gave " + added + " (memory too fragmented or too little free); " + free + " of " + pages
                    + " free";
        }
        LOG.log(
                System.Logger.Level.INFO,
                "hugepages: " + pool + " " + before + " -> " + after + ", " + free + " free (" + pages + " wanted)");
        return new Reservation(pages, node, pool, before, added, free, shortfall);
    }

    /**
     * Gives back what {@code reservation} added: lowers the pool by {@link Reservation#added()}, never below its size
     * before the reservation. Logs and carries on when the pool cannot be written.
     */
    public void release(Reservation reservation) {
        if (reservation.added() <= 0) {
            return;
        }
        try {
            long now = files.read(reservation.poolFile());
            long target = Math.max(reservation.poolBefore(), now - reservation.added());
            if (target >= now) {
                return; // someone else lowered the pool already: nothing of ours is left to give back
            }
            files.write(reservation.poolFile(), target);
            LOG.log(
                    System.Logger.Level.INFO,
                    "hugepages: gave back " + (now - target) + " page(s), " + reservation.poolFile() + " = " + target);
        } catch (IOException e) {
            LOG.log(
                    System.Logger.Level.WARNING,
                    "hugepages: cannot give back " + reservation.added() + " page(s) to " + reservation.poolFile()
                            + ": " + e);
        }
    }

    private Path globalDir() {
        return sysRoot.resolve("kernel").resolve("mm").resolve("hugepages").resolve(SIZE_DIR);
    }

    private Path nodeDir(int node) {
        return sysRoot.resolve("devices")
                .resolve("system")
                .resolve("node")
                .resolve("node" + node)
                .resolve("hugepages")
                .resolve(SIZE_DIR);
    }

    /** {@code Hugepagesize: 2048 kB} in /proc/meminfo (assumed when meminfo cannot be read). */
    private boolean defaultSizeIs2Mb() {
        try {
            for (String line : Files.readAllLines(procRoot.resolve("meminfo"), StandardCharsets.US_ASCII)) {
                if (line.startsWith("Hugepagesize:")) {
                    return line.substring("Hugepagesize:".length()).strip().equals("2048 kB");
                }
            }
        } catch (IOException e) {
            // no meminfo (a test tree): the usual x86_64 default
        }
        return true;
    }
}
