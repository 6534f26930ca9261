/*
 * dragonfly-hybrid bundled rules: persistence.
 *
 * Code that makes itself start again: Windows Run keys and Startup folder, cron, systemd units,
 * macOS LaunchAgents, shell start-up files, browser shortcuts that load a dropped extension, and
 * planted SSH authorized_keys entries.
 */

rule persistence_registry_run_key
{
    meta:
        description = "Writes a value under the Windows Run or RunOnce registry key (CurrentVersion Run) to start at logon."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw"

    strings:
        $run_key = /CurrentVersion\\{1,2}Run(Once)?\b/ nocase
        $winreg_set = /\bSetValueEx?\s{0,2}\(/
        $reg_add = /\breg(\.exe)?['"]?\s{0,2},?\s{0,2}['"]?add\b/ nocase

    condition:
        $run_key and ($winreg_set or $reg_add)
}

rule persistence_startup_folder
{
    meta:
        description = "Copies or writes a file into the Windows Startup folder so it runs at every logon."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw"

    strings:
        $startup_path = /Start Menu['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}Programs['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}Startup/ nocase
        $startup_shell = "shell:startup" nocase
        $write_copy = /\b(shutil\s{0,2}\.\s{0,2}(copy|copy2|copyfile|copytree|move)|os\s{0,2}\.\s{0,2}(rename|replace)|clone_from)\s{0,2}\(/
        $write_mode = /[(,]\s{0,2}(mode\s{0,2}=\s{0,2})?['"](w|a|wb|ab|wt|at|w\+|a\+)['"]\s{0,2}[,)]/
        $write_text = /\.\s{0,2}write_(text|bytes)\s{0,2}\(/

    condition:
        ($startup_path or $startup_shell) and any of ($write_*)
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule persistence_cron_job
{
    meta:
        description = "Installs a cron job from Python, by piping into crontab or writing to a cron directory."
        weight = 6
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $pipe_crontab = /\|\s{0,4}crontab\s{1,4}-(\s|['"]|$)/
        $crontab_list = /crontab\s{1,4}-l\b/
        $echo = /\becho\s/
        $cron_reboot = /@reboot\s/
        $cron_dir = /\/(etc\/cron\.(d|hourly|daily)|var\/spool\/cron)\//
        $launch_system = /\bos\s{0,2}\.\s{0,2}(system|popen)\s{0,2}\(/
        $launch_subprocess = /\bsubprocess\s{0,2}\.\s{0,2}(Popen|call|run|check_call|check_output|getoutput)\s{0,2}\(/
        $write_mode = /[(,]\s{0,2}(mode\s{0,2}=\s{0,2})?['"](w|a|wt|at|w\+|a\+)['"]\s{0,2}[,)]/

    condition:
        // (crontab -l; echo "...") | crontab -   or   echo "..." | crontab -
        (
            any of ($launch_*) and
            for any i in (1..#pipe_crontab) : (
                $crontab_list in (@pipe_crontab[i] - 200..@pipe_crontab[i]) or
                $echo in (@pipe_crontab[i] - 300..@pipe_crontab[i])
            )
        ) or
        ($cron_dir and $write_mode and ($cron_reboot or any of ($launch_*)))
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule persistence_systemd_unit
{
    meta:
        description = "Writes and enables a systemd user unit, or a system unit that runs Python itself or a hidden or temporary file."
        weight = 6
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $user_dir = /\.config['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}systemd['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}user/
        $system_dir = /\/(etc|lib|usr\/lib)\/systemd\/system/
        $exec_start = "ExecStart="
        // what a unit of a system directory must start to count: this interpreter, or a hidden or temporary file
        $target = /(\{sys\.executable\}|\{__file__\}|\/tmp\/|\/dev\/shm\/|\/\.[\w-]{1,40}\/)/
        $enable = /systemctl['"]?\s{0,2},?\s{0,2}(['"]--user['"]\s{0,2},\s{0,2}|--user\s{1,4})?['"]?(enable|daemon-reload)/

    condition:
        $exec_start and $enable and (
            $user_dir or
            ($system_dir and for any i in (1..#exec_start) : ( $target in (@exec_start[i]..@exec_start[i] + 200) ))
        )
}

rule persistence_launch_agent
{
    meta:
        description = "Writes a macOS LaunchAgent property list that runs a program at load (per-user persistence)."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $dir = /Library['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}LaunchAgents/
        $run_at_load = "RunAtLoad"
        $program = "ProgramArguments"
        $launchctl = /launchctl['"]?\s{0,2},?\s{0,2}['"]?(load|bootstrap)/
        $write_plistlib = /\bplistlib\s{0,2}\.\s{0,2}(dump|writePlist)\s{0,2}\(/
        $write_mode = /[(,]\s{0,2}(mode\s{0,2}=\s{0,2})?['"](w|a|wb|ab|wt|at|w\+|a\+)['"]\s{0,2}[,)]/
        $write_text = /\.\s{0,2}write_(text|bytes)\s{0,2}\(/

    condition:
        $dir and $run_at_load and ($program or $launchctl) and any of ($write_*)
}

rule persistence_ssh_authorized_keys
{
    meta:
        description = "Appends a hard-coded public key to ~/.ssh/authorized_keys (SSH backdoor)."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $authorized_keys = "authorized_keys"
        $key = /(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp256) AAAA[0-9A-Za-z+\/]{20}/
        $append_mode = /[(,]\s{0,2}(mode\s{0,2}=\s{0,2})?['"](a|ab|at|a\+)['"]\s{0,2}[,)]/
        $append_redirect = />>\s{0,4}[^\n'"]{0,60}authorized_keys/

    condition:
        $authorized_keys and $key and ($append_mode or $append_redirect)
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule persistence_shell_rc
{
    meta:
        description = "Appends a command to a shell start-up file (.bashrc, .zshrc, .profile, .bash_profile) so that it runs at every login or new shell."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $rc = /['"\/~]\.(bashrc|zshrc|bash_profile|bash_login|profile|zprofile)['"]/
        // open(".bashrc", "a"), open(rc, mode="a")
        $append_mode = /[(,]\s{0,2}(mode\s{0,2}=\s{0,2})?['"](a|at|a\+)['"]\s{0,2}[,)]/
        // echo '...' >> ~/.bashrc
        $append_redirect = />>\s{0,4}['"]?(~|\$HOME|\$\{HOME\}|\/root|\/home\/[\w.-]{1,32})?\/?\.(bashrc|zshrc|bash_profile|profile|zprofile)\b/
        // what is planted: a program started in the background, a download, or a hidden or temporary file
        $payload = /(nohup\s|\s&\s{0,2}['"\n]|curl\s|wget\s|\/tmp\/|\/dev\/shm\/|chmod|base64\s{1,4}-d)/

    condition:
        for any i in (1..#append_redirect) : ( $payload in (@append_redirect[i] - 300..@append_redirect[i] + 100) ) or
        for any i in (1..#rc) : (
            $append_mode in (@rc[i]..@rc[i] + 200) and $payload in (@rc[i] - 1500..@rc[i] + 1500)
        )
}

rule persistence_browser_extension
{
    meta:
        description = "Writes a browser extension to disk and rewrites browser shortcuts or launch arguments to load it (--load-extension)."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $load = "--load-extension"
        $shortcut = /(\.lnk\b|Start Menu|Quick Launch|TaskBar|Desktop)/
        $manifest = "manifest.json"
        $write = /([(,]\s{0,2}(mode\s{0,2}=\s{0,2})?['"](w|w\+|wb|wt)['"]\s{0,2}[,)]|\.\s{0,2}write_(text|bytes)\s{0,2}\(|shutil\s{0,2}\.\s{0,2}copy)/

    condition:
        $load and $shortcut and $manifest and $write
}
