package io.vhostd.master.config;

/**
 * One entry of {@code bdevs:} — a block device the daemon serves from.
 *
 * @param name unique name, 1..64 characters of {@code [A-Za-z0-9._:-]}; key {@code name}, required
 * @param type backing kind; key {@code type}, required; only {@value #TYPE_FILE} is supported now ({@code null},
 *     {@code malloc} and {@code nvme} are refused as not supported yet, #3)
 * @param path absolute path of the backing file; key {@code path}, required
 * @param sizeBytes capacity in bytes, a positive multiple of {@code blockSize}; key {@code size_bytes}: required when
 *     the file does not exist (it is created at that size when the bdev is opened), optional when it does (then it
 *     must equal the file's size, which is filled in when the key is absent)
 * @param readOnly refuse writes; key {@code read_only}, default false
 * @param direct open with {@code O_DIRECT} (bypass the page cache); key {@code direct}, default false
 * @param blockSize logical block size in bytes: 512, 1024, 2048 or 4096; key {@code block_size}, default 512
 */
public record BdevConfig(
        String name, String type, String path, long sizeBytes, boolean readOnly, boolean direct, int blockSize) {
    /** The file-backed bdev kind. */
    public static final String TYPE_FILE = "file";

    /** Default logical block size. */
    public static final int DEFAULT_BLOCK_SIZE = 512;
}
