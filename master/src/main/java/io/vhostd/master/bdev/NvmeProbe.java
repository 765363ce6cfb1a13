package io.vhostd.master.bdev;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Finds the kernel's NVMe controllers and their namespaces in sysfs ({@code /sys/class/nvme/nvmeX}): model, serial,
 * firmware revision, transport and address of each controller, and for each namespace its nsid, block device ({@code
 * /dev/nvmeXnY}), size and logical block size. Reads files only; never opens a device.
 *
 * <p>Namespaces are the controller directory's entries named {@code nvme<i>n<j>} (private namespaces) or {@code
 * nvme<s>c<c>n<j>} (the per-path disk of native multipath, whose block device is the subsystem's head {@code
 * nvme<s>n<j>}).
 *
 * <p>The roots are injectable for tests (a fake tree in a temp directory): the constructor's, else the system
 * properties {@value #SYSFS_ROOT_PROPERTY} (default {@code /sys}) and {@value #DEV_ROOT_PROPERTY} (default {@code
 * /dev}).
 */
public final class NvmeProbe {
    /** System property: the sysfs mount point (default {@code /sys}). */
    public static final String SYSFS_ROOT_PROPERTY = "vhostd.sysfs.root";

    /** System property: where device nodes live (default {@code /dev}). */
    public static final String DEV_ROOT_PROPERTY = "vhostd.dev.root";

    /** sysfs reports namespace sizes in 512-byte sectors whatever the logical block size. */
    static final int SYSFS_SECTOR_BYTES = 512;

    private static final Pattern CONTROLLER = Pattern.compile("nvme([0-9]+)");
    private static final Pattern NAMESPACE = Pattern.compile("nvme([0-9]+)(c[0-9]+)?n([0-9]+)");

    /**
     * One namespace.
     *
     * @param nsid the NVMe namespace id (sysfs {@code nsid}, else the number in the disk name)
     * @param blockDeviceName the disk the kernel exposes, e.g. {@code nvme0n1}
     * @param devicePath its device node, e.g. {@code /dev/nvme0n1}
     * @param sizeBytes capacity in bytes (sysfs {@code size} × 512; 0 when unknown)
     * @param blockSizeBytes logical block size (sysfs {@code queue/logical_block_size}; 512 when unknown)
     */
    public record NvmeNamespace(
            int nsid, String blockDeviceName, String devicePath, long sizeBytes, int blockSizeBytes) {}

    /**
     * One controller.
     *
     * @param name the kernel name, e.g. {@code nvme0}
     * @param model sysfs {@code model}, trimmed
     * @param serial sysfs {@code serial}, trimmed
     * @param firmwareRev sysfs {@code firmware_rev}, trimmed
     * @param transport sysfs {@code transport}: {@code pcie}, {@code tcp}, {@code rdma}, {@code fc}, {@code loop}
     * @param traddr sysfs {@code address}: the PCI address for {@code pcie} (e.g. {@code 0000:01:00.0})
     * @param namespaces by nsid
     */
    public record NvmeController(
            String name,
            String model,
            String serial,
            String firmwareRev,
            String transport,
            String traddr,
            List<NvmeNamespace> namespaces) {
        public NvmeController {
            namespaces = List.copyOf(namespaces);
        }
    }

    private final Path sysfsRoot;
    private final Path devRoot;

    /** Probes the host's sysfs and device nodes (or those the system properties name). */
    public NvmeProbe() {
        this(
                Path.of(System.getProperty(SYSFS_ROOT_PROPERTY, "/sys")),
                Path.of(System.getProperty(DEV_ROOT_PROPERTY, "/dev")));
    }

    /**
     * @param sysfsRoot where sysfs is mounted ({@code /sys})
     * @param devRoot where the device nodes are ({@code /dev})
     */
    public NvmeProbe(Path sysfsRoot, Path devRoot) {
        this.sysfsRoot = sysfsRoot;
        this.devRoot = devRoot;
    }

    /** The NVMe controllers, by name ({@code nvme2} after {@code nvme10}: by number); empty when there are none. */
    public List<NvmeController> controllers() throws IOException {
        Path classDir = sysfsRoot.resolve("class").resolve("nvme");
        List<NvmeController> found = new ArrayList<>();
        if (!Files.isDirectory(classDir)) {
            return found;
        }
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(classDir)) {
            for (Path entry : entries) {
                String name = entry.getFileName().toString();
                if (CONTROLLER.matcher(name).matches()) {
                    found.add(controller(name, entry));
                }
            }
        }
        found.sort(Comparator.comparingInt(c -> Integer.parseInt(c.name().substring(4))));
        return found;
    }

    /** The controller with this kernel name ({@code nvme0}, or {@code /dev/nvme0}). */
    public Optional<NvmeController> byDevice(String device) throws IOException {
        String name = device.substring(device.lastIndexOf('/') + 1);
        return controllers().stream().filter(c -> c.name().equals(name)).findFirst();
    }

    /** The controller whose sysfs {@code address} is {@code traddr} (compared ignoring case). */
    public Optional<NvmeController> byTraddr(String traddr) throws IOException {
        return controllers().stream()
                .filter(c -> c.traddr().equalsIgnoreCase(traddr.strip()))
                .findFirst();
    }

    private NvmeController controller(String name, Path dir) throws IOException {
        List<NvmeNamespace> namespaces = new ArrayList<>();
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir)) {
            for (Path entry : entries) {
                Matcher m = NAMESPACE.matcher(entry.getFileName().toString());
                if (!m.matches() || !Files.isDirectory(entry)) {
                    continue;
                }
                // nvme<s>c<c>n<j> is a path of the multipath head nvme<s>n<j>, which is the disk to open
                String disk = "nvme" + m.group(1) + "n" + m.group(3);
                int nsid = (int) readLong(entry.resolve("nsid"), Long.parseLong(m.group(3)));
                long sectors = readLong(entry.resolve("size"), 0);
                int blockSize = (int) readLong(entry.resolve("queue").resolve("logical_block_size"), 512);
                namespaces.add(new NvmeNamespace(
                        nsid, disk, devRoot.resolve(disk).toString(), sectors * SYSFS_SECTOR_BYTES, blockSize));
            }
        }
        namespaces.sort(Comparator.comparingInt(NvmeNamespace::nsid));
        return new NvmeController(
                name,
                readText(dir.resolve("model")),
                readText(dir.resolve("serial")),
                readText(dir.resolve("firmware_rev")),
                readText(dir.resolve("transport")),
                readText(dir.resolve("address")),
                namespaces);
    }

    /** A sysfs attribute, trimmed (NVMe pads model and serial with blanks); empty when absent. */
    private static String readText(Path file) throws IOException {
        if (!Files.isRegularFile(file)) {
            return "";
        }
        return Files.readString(file, StandardCharsets.UTF_8).strip();
    }

    private static long readLong(Path file, long fallback) throws IOException {
        String text = readText(file);
        if (text.isEmpty()) {
            return fallback;
        }
        try {
            return Long.parseLong(text);
        } catch (NumberFormatException e) {
            throw new IOException(file + ": not a number: '" + text + "'", e);
        }
    }
}
