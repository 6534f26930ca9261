/*
 * dragonfly-hybrid bundled rules: install-time execution.
 *
 * Code that runs when a package is installed or when the interpreter starts: setup.py command
 * overrides, download-and-execute in setup.py / __init__.py / sitecustomize.py, code-executing .pth
 * files, shell one-liners that fetch and run a script, and decoded scripts written out at install time.
 */

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule install_cmdclass_shell
{
    meta:
        description = "setup.py overrides the install, develop or egg_info command and runs a shell command from it."
        weight = 5
        author = "dragonfly-hybrid"
        filetype = "setup.py"

    strings:
        $cmdclass = "cmdclass"
        $override = /class\s{1,4}\w{1,64}\s{0,4}\(\s{0,4}[\w.]{0,48}(install|develop|egg_info|Install|Develop|EggInfo)\w{0,16}\s{0,4}\)\s{0,4}:/
        $run_system = /\bos\s{0,2}\.\s{0,2}(system|popen|startfile|spawn[lv]p?e?|exec[lv]p?e?)\s{0,2}\(/
        $run_subprocess = /\bsubprocess\s{0,2}\.\s{0,2}(Popen|call|run|check_call|check_output|getoutput|getstatusoutput)\s{0,2}\(/
        $run_pty = /\bpty\s{0,2}\.\s{0,2}spawn\s{0,2}\(/
        // subprocess.check_call([sys.executable, "-m", "pkg.tool", ...]): the package's own module run by
        // this interpreter after install (cache rebuilds, registrations), not a shell command
        // os.system("color"), subprocess.call("cls"): one bare word, a console or build nicety
        $trivial = /\b(os\s{0,2}\.\s{0,2}system|subprocess\s{0,2}\.\s{0,2}\w{1,20})\s{0,2}\(\s{0,2}['"][\w.-]{1,16}['"]\s{0,2}\)/
        $self_module = /\bsubprocess\s{0,2}\.\s{0,2}\w{1,20}\s{0,2}\(\s{0,2}\[\s{0,2}sys\s{0,2}\.\s{0,2}executable\s{0,2},\s{0,2}['"]-m['"]\s{0,2},\s{0,2}['"][\w.]{1,60}['"]/

    condition:
        $cmdclass and
        for any i in (1..#override) : (
            $run_pty in (@override[i]..@override[i] + 2000) or
            for any j in (1..#run_system) : (
                @run_system[j] >= @override[i] and @run_system[j] <= @override[i] + 2000 and
                not $trivial at @run_system[j]
            ) or
            for any j in (1..#run_subprocess) : (
                @run_subprocess[j] >= @override[i] and @run_subprocess[j] <= @override[i] + 2000 and
                not $self_module at @run_subprocess[j] and not $trivial at @run_subprocess[j]
            )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule install_cmdclass_network
{
    meta:
        description = "setup.py overrides the install, develop or egg_info command and opens a network connection from it."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = "setup.py"

    strings:
        $cmdclass = "cmdclass"
        $override = /class\s{1,4}\w{1,64}\s{0,4}\(\s{0,4}[\w.]{0,48}(install|develop|egg_info|Install|Develop|EggInfo)\w{0,16}\s{0,4}\)\s{0,4}:/
        $net_urllib = /\b(urlopen|urlretrieve)\s{0,2}\(/
        $net_requests = /\b(requests|httpx|session)\s{0,2}\.\s{0,2}(get|post|put|request)\s{0,2}\(/
        $net_http = /\b(HTTPConnection|HTTPSConnection|PoolManager|create_connection|gethostbyname)\s{0,2}\(/
        $net_socket = /\bsocket\s{0,2}\.\s{0,2}socket\s{0,2}\(/

    condition:
        $cmdclass and
        for any i in (1..#override) : (
            for any of ($net_*) : ( $ in (@override[i]..@override[i] + 2000) )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule install_download_exec
{
    meta:
        description = "setup.py, __init__.py or a start-up file (.pth, sitecustomize.py) downloads content and executes it or launches a process right after."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = "setup.py __init__.py .pth sitecustomize.py usercustomize.py"

    strings:
        // exec(urlopen(url).read()), eval(requests.get(url).text)
        $direct = /\b(exec|eval)\s{0,4}\(\s{0,4}[\w.]{0,40}\b(urlopen|urlretrieve|requests\.get|httpx\.get)\s{0,4}\(/
        $fetch = /\b(urlopen|urlretrieve|requests\s{0,2}\.\s{0,2}get|httpx\s{0,2}\.\s{0,2}get|wget\s{0,2}\.\s{0,2}download)\s{0,4}\(/
        $run_exec = /\b(exec|eval)\s{0,4}\(/
        $run_system = /\bos\s{0,2}\.\s{0,2}(system|popen|startfile|exec[lv]p?e?)\s{0,2}\(/
        $run_subprocess = /\bsubprocess\s{0,2}\.\s{0,2}(Popen|call|run|check_call|check_output)\s{0,2}\(/

    condition:
        $direct or
        for any i in (1..#fetch) : (
            for any of ($run_*) : ( $ in (@fetch[i]..@fetch[i] + 600) )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule install_pth_code_exec
{
    meta:
        description = "A .pth file whose import line decodes a payload, starts a process or opens a network connection at interpreter start-up."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".pth"

    strings:
        // site.py executes the .pth lines that start with "import"; legitimate ones only set up import hooks
        $import_line = /(^|\n)import[ \t]/
        $use_decoder = /\b(b64decode|b32decode|b85decode|decompress|fromhex|unhexlify|marshal\.loads|codecs\.decode)\s{0,2}\(/
        $use_module = /\b(base64|marshal|zlib|subprocess|socket|urllib|requests|http\.client)\s{0,2}\.\s{0,2}[a-zA-Z_]/
        $use_dynamic = /__import__\s{0,2}\(\s{0,2}['"](base64|marshal|zlib|codecs|subprocess|socket|urllib|requests)/
        $use_os = /\bos\s{0,2}\.\s{0,2}(system|popen|startfile|exec[lv]p?e?|spawn[lv]p?e?)\s{0,2}\(/
        $use_call = /\b(Popen|urlopen|urlretrieve)\s{0,2}\(/

    condition:
        for any i in (1..#import_line) : (
            for any of ($use_*) : ( $ in (@import_line[i]..@import_line[i] + 2000) )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule install_shell_downloader
{
    meta:
        description = "Install, import or start-up code (setup.py, __init__.py, .pth, sitecustomize.py) launches a shell one-liner that downloads a script and pipes it to a shell or makes it executable."
        weight = 6
        author = "dragonfly-hybrid"
        filetype = "setup.py __init__.py .pth sitecustomize.py usercustomize.py"

    strings:
        $fetcher = /\b(curl|wget)\s{1,4}-{0,2}[\w:]/
        $pipe_shell = /\|\s{0,3}(sudo\s{1,4})?((ba|z|da|k)?sh|python[23]?(\.\d{1,2})?)\b/
        $chmod = /(&&|;)\s{0,3}chmod\s{1,4}(\+x|[0-7]{3,4})\b/
        $launch_system = /\bos\s{0,2}\.\s{0,2}(system|popen)\s{0,2}\(/
        $launch_subprocess = /\bsubprocess\s{0,2}\.\s{0,2}(Popen|call|run|check_call|check_output|getoutput)\s{0,2}\(/

    condition:
        // the one-liner is launched where it is written (a self-updater that returns the command line
        // for a later, separate step does not count)
        for any i in (1..#pipe_shell) : (
            $fetcher in (@pipe_shell[i] - 200..@pipe_shell[i]) and
            for any of ($launch_*) : ( $ in (@pipe_shell[i] - 500..@pipe_shell[i] + 500) )
        ) or
        for any i in (1..#chmod) : (
            $fetcher in (@chmod[i] - 200..@chmod[i]) and
            for any of ($launch_*) : ( $ in (@chmod[i] - 500..@chmod[i] + 500) )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule install_decoded_script_write
{
    meta:
        description = "Install, import or start-up code (setup.py, __init__.py, .pth, sitecustomize.py) decodes a long embedded base64 or hex blob and writes it out as a script file (.py, .pyw, .vbs, .bat, .ps1, .js)."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = "setup.py __init__.py .pth sitecustomize.py usercustomize.py"

    strings:
        $decode = /\b(b64decode|b32decode|b85decode|decodebytes|unhexlify|fromhex|decompress)\s{0,2}\(/
        $write = /([(,]\s{0,2}(mode\s{0,2}=\s{0,2})?['"](w|wb|w\+|wt)['"]\s{0,2}[,)]|\.\s{0,2}write_(text|bytes)\s{0,2}\()/
        $script = /[\w\\\/-]\.(pyw?|vbs|vbe|bat|cmd|ps1|js|jse|hta|wsf)['"]/ nocase
        // a long encoded literal: the payload itself
        $blob = /['"][A-Za-z0-9+\/]{200}/

    condition:
        for any i in (1..#write) : (
            $script in (@write[i] - 300..@write[i]) and
            $decode in (@write[i] - 1500..@write[i] + 1500) and
            $blob in (@write[i]..@write[i] + 400)
        )
}
