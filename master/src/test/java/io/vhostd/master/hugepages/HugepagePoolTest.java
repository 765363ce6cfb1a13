package io.vhostd.master.hugepages;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** {@link HugepagePool} against a fake procfs and sysfs in a temp directory, and a fake kernel behind their files. */
@Timeout(10)
class HugepagePoolTest {
    @TempDir
    Path dir;

    private Path proc;
    private Path sys;
    private Path globalNr;
    private Path globalFree;

    /**
     * The kernel's side of the pool files: a write to nr_hugepages grows the pool (and its free pages) up to {@code
     * maxPool} (fragmented memory gives no more), or is refused; the files themselves hold what the kernel says.
     */
    private final class FakeKernel implements HugepagePool.PoolFiles {
        long maxPool = Long.MAX_VALUE;
        boolean denyWrites;
        final List<String> writes = new ArrayList<>();

        @Override
        public long read(Path file) throws IOException {
            return HugepagePool.KERNEL_FILES.read(file);
        }

        @Override
        public void write(Path file, long value) throws IOException {
            if (denyWrites) {
                throw new AccessDeniedException(file.toString());
            }
            writes.add(dir.relativize(file) + "=" + value);
            long pool = read(file);
            long granted = Math.min(value, maxPool);
            Path free = file.resolveSibling("free_hugepages");
            if (file.equals(globalNr)) {
                free = globalFree;
            }
            long freeNow = read(free);
            long newFree = Math.max(0, freeNow + (granted - pool));
            HugepagePool.KERNEL_FILES.write(file, granted);
            HugepagePool.KERNEL_FILES.write(free, newFree);
        }
    }

    private final FakeKernel kernel = new FakeKernel();

    @BeforeEach
    void tree() throws IOException {
        proc = dir.resolve("proc");
        sys = dir.resolve("sys");
        globalNr = proc.resolve("sys/vm/nr_hugepages");
        globalFree = sys.resolve("kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
        Files.createDirectories(globalNr.getParent());
        Files.createDirectories(globalFree.getParent());
        Files.writeString(proc.resolve("meminfo"), "MemTotal:       24684096 kB\nHugepagesize:       2048 kB\n");
        set(globalNr, 0);
        set(globalFree.resolveSibling("nr_hugepages"), 0);
        set(globalFree, 0);
        Path node1 = sys.resolve("devices/system/node/node1/hugepages/hugepages-2048kB");
        Files.createDirectories(node1);
        set(node1.resolve("nr_hugepages"), 2);
        set(node1.resolve("free_hugepages"), 1);
    }

    private static void set(Path file, long value) throws IOException {
        Files.writeString(file, value + "\n");
    }

    private HugepagePool pool() {
        return new HugepagePool(proc, sys, kernel);
    }

    @Test
    void shouldRaiseGlobalPoolByMissingPagesWhenTooFewAreFree() throws IOException {
        set(globalNr, 10);
        set(globalFree, 3);

        HugepagePool.Reservation r = pool().reserve(8, -1);

        assertEquals(List.of("proc/sys/vm/nr_hugepages=15"), kernel.writes, "10 + (8 - 3 free)");
        assertEquals(new HugepagePool.Reservation(8, -1, globalNr, 10, 5, 8, null), r);
        assertEquals(8, r.reserved());
        assertEquals(8, pool().freePages(-1));
        assertEquals(15, pool().poolPages(-1));
    }

    @Test
    void shouldChangeNothingWhenEnoughAreFreeAlready() throws IOException {
        set(globalNr, 16);
        set(globalFree, 16);

        HugepagePool.Reservation r = pool().reserve(8, -1);

        assertEquals(List.of(), kernel.writes);
        assertEquals(0, r.added());
        assertEquals(8, r.reserved());
        assertNull(r.shortfallReason());
        pool().release(r);
        assertEquals(List.of(), kernel.writes, "nothing added, nothing given back");
    }

    @Test
    void shouldSayKernelGaveFewerWhenMemoryIsFragmented() {
        kernel.maxPool = 3;

        HugepagePool.Reservation r = pool().reserve(8, -1);

        assertEquals(3, r.added());
        assertEquals(3, r.reserved());
        assertTrue(
                r.shortfallReason().contains("asked the kernel for 8 more huge pages")
                        && r.shortfallReason().contains("it gave 3")
                        && r.shortfallReason().contains("3 of 8 free"),
                r.shortfallReason());
    }

    @Test
    void shouldSayPermissionDeniedWhenPoolCannotBeWritten() {
        kernel.denyWrites = true;

        HugepagePool.Reservation r = pool().reserve(4, -1);

        assertEquals(0, r.added());
        assertEquals(0, r.reserved());
        assertTrue(r.shortfallReason().contains("permission denied (the master is not root)"), r.shortfallReason());
        assertTrue(r.shortfallReason().contains(globalNr.toString()), r.shortfallReason());
    }

    @Test
    void shouldGiveBackWhatItAddedWhenReleased() throws IOException {
        set(globalNr, 2);
        set(globalFree, 0);
        HugepagePool.Reservation r = pool().reserve(4, -1);
        assertEquals(6, pool().poolPages(-1));

        pool().release(r);

        assertEquals(2, pool().poolPages(-1), "back to what it was");
        assertEquals(List.of("proc/sys/vm/nr_hugepages=6", "proc/sys/vm/nr_hugepages=2"), kernel.writes);
    }

    @Test
    void shouldNotRaisePoolWhenSomeoneElseLoweredItBeforeRelease() throws IOException {
        HugepagePool.Reservation r = pool().reserve(4, -1);
        set(globalNr, 0);

        pool().release(r);

        assertEquals(0, pool().poolPages(-1));
        assertEquals(List.of("proc/sys/vm/nr_hugepages=4"), kernel.writes, "release wrote nothing");
    }

    @Test
    void shouldUseNodePoolWhenNodeGiven() throws IOException {
        HugepagePool.Reservation r = pool().reserve(3, 1);

        assertEquals(List.of("sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages=4"), kernel.writes);
        assertEquals(2, r.poolBefore());
        assertEquals(2, r.added());
        assertEquals(3, r.free());
        assertEquals(1, r.node());
    }

    @Test
    void shouldSayNoPoolWhenNodeDoesNotExist() {
        HugepagePool.Reservation r = pool().reserve(3, 7);

        assertEquals(0, r.reserved());
        assertTrue(r.shortfallReason().startsWith("no 2 MiB huge page pool"), r.shortfallReason());
        assertEquals(List.of(), kernel.writes);
    }

    @Test
    void shouldUseSysfs2MbPoolWhenDefaultHugePageSizeIsNot2Mb() throws IOException {
        Files.writeString(proc.resolve("meminfo"), "Hugepagesize:    1048576 kB\n");

        pool().reserve(1, -1);

        assertEquals(List.of("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages=1"), kernel.writes);
    }

    @Test
    void shouldReadAndWriteThePlainFilesWhenNoFakeKernel() throws IOException {
        HugepagePool plain = new HugepagePool(proc, sys, HugepagePool.KERNEL_FILES);
        set(globalNr, 1);

        HugepagePool.Reservation r = plain.reserve(2, -1);

        // the files do not move the free count as a kernel would: the reservation says so
        assertEquals("3", Files.readString(globalNr).strip());
        assertEquals(2, r.added());
        assertEquals(0, r.reserved());
        assertTrue(r.shortfallReason().contains("0 of 2 free"), r.shortfallReason());
        plain.release(r);
        assertEquals("1", Files.readString(globalNr).strip());
    }
}
