package io.vhostd.master.bdev;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A fake {@code /sys/class/nvme} and {@code /dev} in a temp directory, shaped as the kernel lays them out; its
 * namespaces' "block devices" are regular files of the namespace's size.
 */
public final class FakeNvmeTree {
    private final Path sysRoot;
    private final Path devRoot;

    public FakeNvmeTree(Path root) throws IOException {
        this.sysRoot = root.resolve("sys");
        this.devRoot = root.resolve("dev");
        Files.createDirectories(sysRoot.resolve("class").resolve("nvme"));
        Files.createDirectories(devRoot);
    }

    public Path sysRoot() {
        return sysRoot;
    }

    public Path devRoot() {
        return devRoot;
    }

    public NvmeProbe probe() {
        return new NvmeProbe(sysRoot, devRoot);
    }

    /** Adds controller {@code name} with NVMe's blank-padded model and serial, as sysfs shows them. */
    public Path controller(String name, String model, String serial, String firmware, String transport, String address)
            throws IOException {
        Path dir = sysRoot.resolve("class").resolve("nvme").resolve(name);
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("model"), String.format("%-40s\n", model));
        Files.writeString(dir.resolve("serial"), String.format("%-20s\n", serial));
        Files.writeString(dir.resolve("firmware_rev"), String.format("%-8s\n", firmware));
        Files.writeString(dir.resolve("transport"), transport + "\n");
        Files.writeString(dir.resolve("address"), address + "\n");
        Files.writeString(dir.resolve("state"), "live\n");
        return dir;
    }

    /**
     * Adds a namespace directory {@code entry} ({@code nvme0n1}, or {@code nvme0c0n1} for a multipath path) under
     * {@code controllerDir}, and its disk's "device node" {@code /dev/<disk>} as a file of {@code sizeBytes}.
     */
    public void namespace(Path controllerDir, String entry, String disk, int nsid, long sizeBytes, int blockSize)
            throws IOException {
        Path dir = controllerDir.resolve(entry);
        Files.createDirectories(dir.resolve("queue"));
        Files.writeString(dir.resolve("nsid"), nsid + "\n");
        Files.writeString(dir.resolve("size"), sizeBytes / 512 + "\n");
        Files.writeString(dir.resolve("queue").resolve("logical_block_size"), blockSize + "\n");
        Path node = devRoot.resolve(disk);
        if (!Files.exists(node)) {
            try (RandomAccessFile f = new RandomAccessFile(node.toFile(), "rw")) {
                f.setLength(sizeBytes);
            }
        }
    }
}
