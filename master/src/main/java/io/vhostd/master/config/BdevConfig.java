package io.vhostd.master.config;

import java.util.Set;

/**
 * One entry of {@code bdevs:} — a block device the daemon serves from — or the parameters of a bdev created over RPC
 * (the registry stores the same record).
 *
 * <p>Keys by type (any other key is an error that names it):
 *
 * <ul>
 *   <li>{@value #TYPE_FILE}: a raw image. {@code path} (absolute, required), {@code size_bytes} (required when the
 *       file does not exist: it is created at that size; when given for an existing file it must equal its size),
 *       {@code block_size}, {@code direct}, {@code read_only}.
 *   <li>{@value #TYPE_BLOCK}: a block device. {@code path} (absolute, an existing block device), {@code block_size}
 *       (at least the device's logical block size, which is used when larger), {@code direct}, {@code read_only}. The
 *       size is the device's ({@code BLKGETSIZE64}); {@link #sizeBytes} is 0 until the device is opened.
 *   <li>{@value #TYPE_NVME}: the namespaces of a kernel NVMe controller, each a bdev {@code <name>n<nsid>}. Exactly one
 *       of {@code traddr} (the controller's transport address, sysfs {@code address}, e.g. {@code 0000:01:00.0}) and
 *       {@code device} ({@code nvme0} or {@code /dev/nvme0}); {@code direct}, {@code read_only}.
 *   <li>{@value #TYPE_NULL}: reads return zeroes, writes are dropped (benchmarks). {@code num_blocks} or
 *       {@code size_bytes} (one is required; both must agree), {@code block_size}, {@code read_only}.
 *   <li>{@value #TYPE_MALLOC}: RAM. Keys as for {@code null}.
 * </ul>
 *
 * @param name unique name, 1..64 characters of {@code [A-Za-z0-9._:-]}; key {@code name}, required. For {@code nvme}
 *     the prefix of the namespaces' bdev names.
 * @param type {@value #TYPE_FILE}, {@value #TYPE_BLOCK}, {@value #TYPE_NVME}, {@value #TYPE_NULL} or {@value
 *     #TYPE_MALLOC}; key {@code type}, required
 * @param path the image or block device; null for other types
 * @param sizeBytes capacity in bytes, a positive multiple of {@code blockSize}; 0 where the device decides ({@code
 *     block}, {@code nvme})
 * @param readOnly refuse writes; key {@code read_only}, default false
 * @param direct also open with {@code O_DIRECT}, used for I/O aligned to the logical block size; key {@code direct},
 *     default false
 * @param blockSize logical block size in bytes: 512, 1024, 2048 or 4096; key {@code block_size}, default 512
 * @param device {@code nvme} only: the controller's kernel name ({@code nvme0}); null otherwise
 * @param traddr {@code nvme} only: the controller's transport address; null otherwise
 */
public record BdevConfig(
        String name,
        String type,
        String path,
        long sizeBytes,
        boolean readOnly,
        boolean direct,
        int blockSize,
        String device,
        String traddr) {
    /** A raw image file. */
    public static final String TYPE_FILE = "file";

    /** A block device. */
    public static final String TYPE_BLOCK = "block";

    /** The namespaces of a kernel NVMe controller. */
    public static final String TYPE_NVME = "nvme";

    /** Zeroes in, nothing out. */
    public static final String TYPE_NULL = "null";

    /** RAM. */
    public static final String TYPE_MALLOC = "malloc";

    /** Every type, for messages and schemas. */
    public static final Set<String> TYPES = Set.of(TYPE_FILE, TYPE_BLOCK, TYPE_NVME, TYPE_NULL, TYPE_MALLOC);

    /** Default logical block size. */
    public static final int DEFAULT_BLOCK_SIZE = 512;

    /** A {@code file} (or {@code block}) bdev: no NVMe controller. */
    public BdevConfig(
            String name, String type, String path, long sizeBytes, boolean readOnly, boolean direct, int blockSize) {
        this(name, type, path, sizeBytes, readOnly, direct, blockSize, null, null);
    }

    /** Capacity in logical blocks (0 when the device decides). */
    public long numBlocks() {
        return sizeBytes / blockSize;
    }
}
