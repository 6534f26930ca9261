/*
 * dragonfly-hybrid bundled rules: remote shells.
 *
 * Reverse shells built from a socket and a shell process (dup2, or cmd.exe relayed through pipes),
 * bash /dev/tcp and netcat one-liners, and command loops that run what a socket receives and send
 * the output back.
 */

rule shells_reverse_socket_dup2
{
    meta:
        description = "Connects a socket, duplicates it onto stdin/stdout/stderr with os.dup2 and starts a shell (reverse shell)."
        weight = 9
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $connect = /\.\s{0,2}connect\s{0,2}\(\s{0,2}\(/
        $dup2 = /\bos\s{0,2}\.\s{0,2}dup2\s{0,2}\(\s{0,2}[\w.]{1,40}\s{0,2}\.\s{0,2}fileno\s{0,2}\(\s{0,2}\)\s{0,2},\s{0,2}[012]\s{0,2}\)/
        $shell_bin = /['"]\/bin\/(ba|z|da)?sh['"]/
        $shell_cmd = /['"]cmd(\.exe)?['"]/
        $shell_pty = /\bpty\s{0,2}\.\s{0,2}spawn\s{0,2}\(/

    condition:
        $connect and $dup2 and any of ($shell_*)
}

rule shells_dev_tcp_netcat
{
    meta:
        description = "Interactive shell redirected to /dev/tcp, or netcat/mkfifo one-liners that serve a shell to a remote host."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth .sh"

    strings:
        $dev_tcp_interactive = /\b(ba|z)?sh\s{1,4}-i\s{0,4}[0-9]?>&\s{0,4}\/dev\/tcp\//
        $dev_tcp_redirect = /\/dev\/tcp\/[\w.{}\-]{1,100}\/[\w{}]{1,10}\s{0,4}0>&1/
        $dev_tcp = "/dev/tcp/"
        // sh <&196 >&196 2>&196 after exec 196<>/dev/tcp/...: a shell reading from the socket descriptor
        $fd_shell = /\b(ba|z)?sh\s{1,4}<&\s{0,2}\d{1,3}\s{1,4}>&\s{0,2}\d{1,3}/
        $netcat_exec = /\b(nc|ncat|netcat)(\.exe)?\s[^\n'"]{0,60}\s-(e|c)\s{1,4}(\/bin\/(ba|z)?sh|cmd(\.exe)?)\b/
        $mkfifo = /mkfifo\s{1,4}\/tmp\/\w{1,20}\s{0,4};[^\n'";]{0,40};[^\n'";]{0,40}\b(nc|ncat|netcat)\s/

    condition:
        $dev_tcp_interactive or $dev_tcp_redirect or ($dev_tcp and $fd_shell) or $netcat_exec or $mkfifo
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule shells_socket_command_loop
{
    meta:
        description = "Runs commands received from a connected socket through the shell and sends the output back (backdoor loop)."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $connect = /\.\s{0,2}connect\s{0,2}\(\s{0,2}\(/
        $recv = /\.\s{0,2}recv\s{0,2}\(\s{0,2}(\d{2,7}|[A-Z_]{2,30})\s{0,2}\)/
        $run = /\b(subprocess\s{0,2}\.\s{0,2}(check_output|Popen|run|getoutput|getstatusoutput|call)|os\s{0,2}\.\s{0,2}(popen|system))\s{0,2}\(/
        $send = /\.\s{0,2}(send|sendall)\s{0,2}\(/

    condition:
        $connect and
        for any i in (1..#recv) : (
            $run in (@recv[i]..@recv[i] + 400) and
            $send in (@recv[i]..@recv[i] + 1000)
        )
}

rule shells_cmd_socket_relay
{
    meta:
        description = "Starts cmd.exe, PowerShell or a shell with piped stdin/stdout and relays it over a connected socket (reverse shell without dup2)."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $connect = /\.\s{0,2}connect\s{0,2}\(\s{0,2}\(/
        $shell = /\b(Popen|run|call)\s{0,2}\(\s{0,2}\[?\s{0,2}['"](cmd(\.exe)?|powershell(\.exe)?|\/bin\/(ba|z)?sh)['"]/ nocase
        $pipe = /\bstdin\s{0,2}=\s{0,2}(subprocess\s{0,2}\.\s{0,2})?PIPE\b/
        $recv = /\.\s{0,2}recv\s{0,2}\(/
        $send = /\.\s{0,2}(send|sendall)\s{0,2}\(/

    condition:
        all of them
}
