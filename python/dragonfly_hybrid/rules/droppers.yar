/*
 * dragonfly-hybrid bundled rules: droppers.
 *
 * Second stages launched from Python: through Windows living-off-the-land binaries (encoded
 * PowerShell, certutil, mshta, bitsadmin, regsvr32, rundll32), executables embedded in source,
 * decoded scripts written out and started, downloaded executables and scripts started (also from
 * bare IP addresses, chat CDNs and paste hosts, or by shell fetch-chmod-run chains), windowless Python
 * on temp files, and cryptominers.
 */

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule dropper_powershell_encoded
{
    meta:
        description = "Launches PowerShell with an encoded command, or with a download cradle piped to Invoke-Expression."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $powershell = /\bpowershell(\.exe)?\b/ nocase
        // -enc <base64> on one command line, or "-EncodedCommand", variable in an argument list
        $flag_literal = /[\s'"]-(e|ec|enc|enco|encodedcommand)['"]?[\s,]{1,4}['"]?[A-Za-z0-9+\/]{16}/ nocase
        // f"powershell -EncodedCommand {payload}": counts when the script it encodes downloads or starts
        // something (a version probe that encodes its own query does not)
        $fstring_flag = /[\s'"]-(e|ec|enc|enco|encodedcommand)['"]?\s{1,4}\{\s{0,2}[a-z_]\w{0,40}/ nocase
        $flag_variable = /[\s'"]-(e|ec|enc|enco|encodedcommand)['"]?\s{0,4},\s{0,4}[a-z_]\w{0,40}\s{0,4}[,\]]/ nocase
        $cradle_download = /(DownloadString|DownloadData|Invoke-WebRequest|\biwr\b|Net\.WebClient)/ nocase
        $cradle_invoke = /(\bIEX\b|Invoke-Expression)/ nocase
        $ps_action = /(Start-Process|Add-MpPreference|DownloadFile|Invoke-WebRequest|\biwr\b|DownloadString|Invoke-Expression|\bIEX\b)/ nocase
        $launch_system = /\bos\s{0,2}\.\s{0,2}(system|popen|startfile)\s{0,2}\(/
        $launch_subprocess = /\bsubprocess\s{0,2}\.\s{0,2}(Popen|call|run|check_call|check_output|getoutput)\s{0,2}\(/
        $launch_shellexec = "ShellExecute"

    condition:
        any of ($launch_*) and (
            for any i in (1..#fstring_flag) : (
                $powershell in (@fstring_flag[i] - 200..@fstring_flag[i]) and
                $ps_action in (@fstring_flag[i] - 1500..@fstring_flag[i] + 300)
            ) or
            for any i in (1..#powershell) : (
                for any of ($flag_*) : ( $ in (@powershell[i]..@powershell[i] + 200) ) or
                (
                    $cradle_download in (@powershell[i]..@powershell[i] + 400) and
                    $cradle_invoke in (@powershell[i]..@powershell[i] + 400)
                )
            )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule dropper_lolbin_download
{
    meta:
        description = "Launches certutil, mshta, bitsadmin, regsvr32 or rundll32 to download, decode or run a remote payload."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // certutil -urlcache / -decode, mshta <url>, bitsadmin /transfer, regsvr32 /i:<url>, rundll32 javascript:
        $lolbin = /(certutil(\.exe)?['"]?[\s,]{1,4}[^\n]{0,40}-(urlcache|decode|decodehex)\b|mshta(\.exe)?['"]?[\s,]{1,4}['"]?(https?:|vbscript:|javascript:)|bitsadmin(\.exe)?['"]?[\s,]{1,4}[^\n]{0,40}\/transfer\b|regsvr32(\.exe)?['"]?[^\n]{0,80}\/i:\s{0,2}https?:|rundll32(\.exe)?['"]?[\s,]{1,4}[^\n]{0,40}javascript:)/ nocase
        $launch_system = /\bos\s{0,2}\.\s{0,2}(system|popen|startfile)\s{0,2}\(/
        $launch_subprocess = /\bsubprocess\s{0,2}\.\s{0,2}(Popen|call|run|check_call|check_output|getoutput)\s{0,2}\(/
        $launch_shellexec = "ShellExecute"

    condition:
        // the command line is built within a few lines of the call that starts it
        for any i in (1..#lolbin) : (
            for any of ($launch_*) : ( $ in (@lolbin[i] - 400..@lolbin[i] + 400) )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule dropper_embedded_executable
{
    meta:
        description = "Python source embeds a Windows PE or Linux ELF executable as base64, hex or escaped bytes, writes it to a file and runs it."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // base64 of the standard MZ header and DOS stub, of a Borland-style MZ header, of a 64-bit ELF header
        $pe_b64 = "TVqQAAMAAAAEAAAA"
        $pe_b64_borland = "TVpQAAIAAAAEAA8A"
        $pe_b64_stub = "VGhpcyBwcm9ncmFtIGNhbm5vdCBiZSBydW4gaW4gRE9TIG1vZGU"
        $elf_b64 = "f0VMRgIBAQAAAAAAAAAAAA"
        $pe_hex = "4d5a90000300000004000000ffff0000" nocase
        $elf_hex = "7f454c46020101000000000000000000" nocase
        $pe_escaped = "MZ\\x90\\x00\\x03\\x00\\x00\\x00\\x04\\x00"
        $elf_escaped = "\\x7fELF\\x02\\x01\\x01"
        // open(path, "wb") or Path.write_bytes(...)
        $write = /([(,]\s{0,2}(mode\s{0,2}=\s{0,2})?['"](wb|ab|xb|wb\+|w\+b)['"]\s{0,2}[,)]|\.\s{0,2}write_bytes\s{0,2}\()/
        // started on this machine: a test that only compares headers, or a toolkit that uploads the
        // binary to another host, writes or decodes it without any of these
        $run_os = /\bos\s{0,2}\.\s{0,2}(startfile|system|popen|exec[lv]p?e?|spawn[lv]p?e?)\s{0,2}\(/
        $run_subprocess = /\bsubprocess\s{0,2}\.\s{0,2}(Popen|call|run|check_call|check_output)\s{0,2}\(/
        $run_shell = /\b(ShellExecute(Ex)?[AW]?|CreateProcess[AW]?|WinExec)\b/

    condition:
        any of ($pe_*, $elf_*) and
        // written and started together, as a dropper does (not a test writing objects here, running tools there)
        for any i in (1..#write) : (
            for any of ($run_*) : ( $ in (@write[i] - 1500..@write[i] + 1500) )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule dropper_exec_remote_code
{
    meta:
        description = "Executes code fetched over HTTP directly, as in exec(urlopen(url).read()) or exec(requests.get(url).text)."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // exec(urlopen(url).read()), exec(requests.get(url).text), eval(httpx.get(url).text)
        // (an alias such as `from urllib.request import urlopen as _uurlopen` keeps the name as a suffix;
        // __import__('requests').get(...) spells the module as a string)
        // (also after an escaped newline, "...\nexec(...)", in code kept in a string for a later exec)
        $direct = /(\b|\\[nrt])(exec|eval)\s{0,4}\(\s{0,4}(compile\s{0,4}\(\s{0,4})?[\w.]{0,40}(urlopen|requests\.get|requests\.post|httpx\.get|session\.get|__import__\s{0,2}\(\s{0,2}['"](requests|httpx)['"]\s{0,2}\)\s{0,2}\.\s{0,2}(get|post))\s{0,4}\(/
        $fetch = /\b(urlopen|requests\s{0,2}\.\s{0,2}get|httpx\s{0,2}\.\s{0,2}get|session\s{0,2}\.\s{0,2}get)\s{0,4}\(/
        // r = requests.get(url); exec(r.text) / resp = urlopen(url); exec(resp.read())
        // exec(rs.get(url).text), exec(client.urlopen(url).read()): any client object's fetch, run at once
        // (its arguments up to 150 bytes: every read past them costs on a flood of "exec(a.get(")
        $chain = /\b(exec|eval)\s{0,4}\(\s{0,4}[\w.]{1,40}\.\s{0,2}(get|post|urlopen)\s{0,2}\([^\n]{1,150}\)\s{0,2}\.\s{0,2}(text|content|read\s{0,2}\(\s{0,2}\))/
        $exec_response = /\b(exec|eval)\s{0,4}\(\s{0,4}(compile\s{0,4}\(\s{0,4})?\w{1,40}\s{0,2}\.\s{0,2}(text|content|read\s{0,2}\(\s{0,2}\))/

    condition:
        $direct or $chain or
        for any i in (1..#fetch) : ( $exec_response in (@fetch[i]..@fetch[i] + 300) )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule dropper_decoded_script_launch
{
    meta:
        description = "Decodes an embedded payload, writes it out as a script (.py, .pyw, .vbs, .bat, .ps1, .js) and starts it as a separate process."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $decode = /\b(b64decode|b32decode|b85decode|a85decode|decodebytes|unhexlify|fromhex|decompress)\s{0,2}\(/
        $write = /([(,]\s{0,2}(mode\s{0,2}=\s{0,2})?['"](w|wb|w\+|wt|a|ab)['"]\s{0,2}[,)]|\.\s{0,2}write_(text|bytes)\s{0,2}\()/
        $script = /[\w\\\/-]\.(pyw?|vbs|vbe|bat|cmd|ps1|js|jse|hta|wsf)['"]/ nocase
        $launch_os = /\bos\s{0,2}\.\s{0,2}(system|popen|startfile|exec[lv]p?e?|spawn[lv]p?e?)\s{0,2}\(/
        $launch_subprocess = /\b(subprocess\s{0,2}\.\s{0,2})?(Popen|call|check_call|check_output|run)\s{0,2}\(\s{0,2}(\[\s{0,2})?(f?['"](wscript|cscript|pythonw?|python3|start|cmd|powershell|bash|sh)\b|sys\s{0,2}\.\s{0,2}executable|_?\w{0,12}executable)/ nocase
        $launch_shell = /\b(ShellExecute(Ex)?[AW]?|wscript(\.exe)?\s|cscript(\.exe)?\s)/ nocase

    condition:
        $script and
        for any i in (1..#write) : (
            $decode in (@write[i] - 1500..@write[i] + 1500) and
            for any of ($launch_*) : ( $ in (@write[i]..@write[i] + 3000) )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule dropper_download_run_executable
{
    meta:
        description = "Downloads a Windows executable or script from a URL, or from a chat or paste host, and starts it."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // a URL literal naming an executable, or a file on a chat CDN or paste host used as payload storage
        // grouped so YARA-X's atoms are the extensions and hosts, not `://` (200 bytes read per `http://` of a flood)
        $url = /(https?)(:\/\/([^\s'"]{4,200}\.(exe|scr|msi|bat|vbs|ps1|hta)(\?[^\s'"]{0,200})?['"\s]|(cdn\.discordapp\.com\/attachments|media\.discordapp\.net\/attachments|pastebin\.com\/raw|paste\.[\w.]{2,20}\/(raw|paste)|rentry\.(co|org)\/[\w]{2,20}\/raw|transfer\.sh|anonfiles\.com|file\.io)\/))/ nocase
        $fetch = /\b(urlopen|urlretrieve|requests\s{0,2}\.\s{0,2}get|httpx\s{0,2}\.\s{0,2}get|wget\s{0,2}\.\s{0,2}download|curl\s{1,4}(-[a-zA-Z]{1,3}\s{1,4}){0,4}|Invoke-WebRequest|\biwr\s|DownloadFile|Start-BitsTransfer)/
        // from requests import get; get("https://...")
        $fetch_bare = /(^|[^\w.]|\w\s{0,2}\.\s{0,2})get\s{0,2}\(\s{0,2}f?['"]https?:\/\//
        $run_os = /\bos\s{0,2}\.\s{0,2}(system|popen|startfile|exec[lv]p?e?|spawn[lv]p?e?)\s{0,2}\(/
        $run_subprocess = /\bsubprocess\s{0,2}\.\s{0,2}(Popen|call|run|check_call|check_output)\s{0,2}\(/
        $run_shell = /\b(ShellExecute(Ex)?[AW]?|Start-Process|WinExec|CreateProcess[AW]?)\b/
        // names imported bare (from subprocess import run; from os import startfile) launching a program
        $run_bare = /(^|[^\w.])(Popen|startfile|check_call|run|call|system)\s{0,2}\(\s{0,2}(\[\s{0,2})?f?['"]?(start|cmd|powershell|[\w{}\\\/:.-]{1,80}\.exe)\b/
        // the fetched file is saved under an executable's name (urlretrieve(url, "helper.exe"), curl -o x.exe)
        $exe_name = /['"\s][\w{}\\\/:.%-]{1,120}\.(exe|scr)['"\s]/ nocase
        // ... but not a Windows tool that does the fetching or launching itself
        $system_exe = /\b(powershell|pwsh|cmd|pythonw?3?|wscript|cscript|rundll32|regsvr32|mshta|msiexec|certutil|bitsadmin|curl|conhost|explorer|schtasks|reg|taskkill|netsh)\.exe/ nocase

    condition:
        // the URL is fetched right where it is written, and what was fetched is started soon after
        for any i in (1..#url) : (
            ($fetch in (@url[i] - 400..@url[i] + 400) or $fetch_bare in (@url[i] - 20..@url[i])) and
            for any of ($run_*) : ( $ in (@url[i] - 1000..@url[i] + 2000) )
        ) or
        for any i in (1..#exe_name) : (
            not $system_exe in (@exe_name[i]..@exe_name[i] + !exe_name[i]) and
            $fetch in (@exe_name[i] - 300..@exe_name[i] + 300) and
            for any of ($run_*) : ( $ in (@exe_name[i]..@exe_name[i] + 1000) )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule dropper_raw_ip_payload
{
    meta:
        description = "Fetches a file from a bare public IP address and makes it executable or runs it (second stage served without a domain)."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // http://203.0.113.7/x, https://203.0.113.7:8080/x (loopback, private and link-local ranges are left out)
        $url = /https?:\/\/\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(:\d{2,5})?\/[^\s'"]{1,200}/
        $private = /https?:\/\/(127\.|10\.|0\.|192\.168\.|169\.254\.|172\.(1[6-9]|2\d|3[01])\.)/
        $fetch = /\b(urlopen|urlretrieve|requests\s{0,2}\.\s{0,2}get|httpx\s{0,2}\.\s{0,2}get|wget|curl)\b/
        $run_chmod = /\b(chmod\s{0,2}\(|chmod\s{1,4}(\+x|[0-7]{3,4})\s|S_IEXEC|S_IXUSR)/
        $run_os = /\bos\s{0,2}\.\s{0,2}(system|popen|startfile|exec[lv]p?e?|spawn[lv]p?e?)\s{0,2}\(/
        $run_subprocess = /\bsubprocess\s{0,2}\.\s{0,2}(Popen|call|run|check_call|check_output)\s{0,2}\(/
        $run_exec = /\b(exec|eval)\s{0,2}\(/

    condition:
        for any i in (1..#url) : (
            not $private at @url[i] and
            $fetch in (@url[i] - 300..@url[i] + 300) and
            for any of ($run_*) : ( $ in (@url[i] - 500..@url[i] + 2000) )
        )
}

rule dropper_cryptominer
{
    meta:
        description = "Downloads, configures or starts a cryptocurrency miner (XMRig and similar, stratum pool URLs, pool wallet arguments)."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth .sh"

    strings:
        $miner_xmrig = /\bxmrig\b/ nocase
        $miner_other = /\b(cpuminer|xmr-stak|nbminer|lolminer|phoenixminer|ethminer|srbminer)\b/ nocase
        $pool_stratum = /stratum\+(tcp|ssl|tls):\/\//
        $pool_args = /--(donate-level|coin|algo|cpu-max-threads-hint|randomx-1gb-pages)[\s=]/
        $pool_hosts = /\b(pool\.minexmr\.com|moneroocean\.stream|supportxmr\.com|xmrpool\.eu|nanopool\.org|2miners\.com|c3pool\.com|hashvault\.pro|herominers\.com|unmineable\.com|f2pool\.com)\b/
        $run_os = /\bos\s{0,2}\.\s{0,2}(system|popen|startfile|chmod|exec[lv]p?e?)\s{0,2}\(/
        $run_subprocess = /\bsubprocess\s{0,2}\.\s{0,2}(Popen|call|run|check_call|check_output)\s{0,2}\(/
        $run_fetch = /\b(urlopen|urlretrieve|requests\s{0,2}\.\s{0,2}get|wget|curl)\b/

    condition:
        (any of ($miner_*) and (any of ($pool_*) or any of ($run_*))) or
        (any of ($pool_*) and any of ($run_os, $run_subprocess))
}

rule dropper_shell_fetch_chmod_run
{
    meta:
        description = "A shell command line saves a download to a file, makes it executable and runs it (curl -o f && chmod +x f && ./f)."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // <any fetcher> ... -o /tmp/x; chmod +x /tmp/x; /tmp/x   (or && ./x, or bash x); the fetcher may be renamed
        $chain = /\s-(o|O|-output)\s{1,4}['"]?[\w{}.\/~$-]{1,100}['"]?[^\n;&|]{0,100}\s{0,2}(;|&&)\s{0,4}chmod\s{1,4}(\+x|[0-7]{3,4})\s{1,4}['"]?[\w{}.\/~$-]{1,100}['"]?\s{0,2}(;|&&)\s{0,4}(\.\/|\/|~\/|\$\w|bash\s|sh\s|nohup\s)/

    condition:
        $chain
}

rule dropper_hidden_python_temp_script
{
    meta:
        description = "Writes Python code to a temporary file and starts it with a windowless interpreter (pythonw, or sys.executable renamed to the w.exe variant) so it outlives the installer."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $pythonw = /(\bpythonw(\.exe)?\b|\.replace\s{0,2}\(\s{0,2}['"]\.exe['"]\s{0,2},\s{0,2}['"]w\.exe['"]\s{0,2}\))/
        $temp = /\b(NamedTemporaryFile|gettempdir|mkstemp|mktemp)\b|%TEMP%|\\Temp\\|\/tmp\//
        $write = /\.\s{0,2}write\s{0,2}\(\s{0,2}b?(['"]{1,3})(import |from |exec\(|__import__)/
        // any launcher, also under an alias (from os import system as _x): _x(f"start {...}")
        $launch = /\b\w{1,40}\s{0,2}\(\s{0,2}(\[\s{0,2})?f?['"](start\s|cmd(\.exe)?\s|[^'"\n]{0,60}pythonw)/

    condition:
        $pythonw and $temp and $write and $launch
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule dropper_download_run_script
{
    meta:
        description = "Downloads a Python script into site-packages, the temp folder or a hidden folder and starts it as a detached process with this interpreter."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $fetch = /\b(urlopen|urlretrieve|requests\s{0,2}\.\s{0,2}get|httpx\s{0,2}\.\s{0,2}get)\s{0,2}\(/
        $place = /\b(getsitepackages|getusersitepackages|site-packages|gettempdir|NamedTemporaryFile|mkstemp)\b|\/tmp\/|APPDATA|LOCALAPPDATA/
        $script = /\.pyw?['"]/
        $start = /\b(Popen|run|call)\s{0,2}\(\s{0,2}\[\s{0,2}(sys\s{0,2}\.\s{0,2}executable|['"]pythonw?3?(\.exe)?['"])\s{0,2},/
        $detach = /\b(start_new_session\s{0,2}=\s{0,2}True|DETACHED_PROCESS|CREATE_NEW_PROCESS_GROUP|CREATE_NO_WINDOW|close_fds\s{0,2}=\s{0,2}True|0x0{0,4}8\b|setsid)/

    condition:
        $place and $script and
        for any i in (1..#fetch) : (
            for any j in (1..#start) : (
                @start[j] > @fetch[i] and @start[j] < @fetch[i] + 3000 and
                $detach in (@start[j]..@start[j] + 300)
            )
        )
}
