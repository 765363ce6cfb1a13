import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.NvmeIoctl;
import io.vhostd.shm.linux.Unistd;

/**
 * Guest side of tests/vm/capture-nvme-logs.sh: reads the SMART / Health Information log page and Identify Controller
 * through vhostd's own binding ({@link NvmeIoctl}, the master's code path) and prints them as hex between markers, so
 * the script can check them byte for byte against what nvme-cli read from the same controller.
 *
 * <p>Usage: {@code java --enable-native-access=ALL-UNNAMED -cp virtnvme-shm-classes:. NvmeIoctlDump /dev/nvme0}
 */
public final class NvmeIoctlDump {
    private NvmeIoctlDump() {}

    public static void main(String[] args) {
        int fd = Fcntl.open(args[0], Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, 0);
        try {
            dump("VHOSTD-SMART-BIN", NvmeIoctl.getSmartLog(fd));
            dump("VHOSTD-IDCTRL-BIN", NvmeIoctl.identifyController(fd));
        } finally {
            Unistd.close(fd);
        }
    }

    private static void dump(String marker, byte[] data) {
        StringBuilder out = new StringBuilder("@@" + marker + "-BEGIN@@\n");
        for (int i = 0; i < data.length; i++) {
            out.append(String.format("%02x", data[i] & 0xFF)).append(i % 16 == 15 ? '\n' : ' ');
        }
        out.append("@@").append(marker).append("-END@@\n");
        System.out.print(out);
    }
}
