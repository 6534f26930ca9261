/*
 * dragonfly-hybrid bundled rules: exfiltration.
 *
 * Host and user data sent to chat webhooks (Discord, Telegram, Slack), to paste, file-drop or
 * request-capture services, or beaconed from install-time code (dependency-confusion recon) over
 * HTTP to capture, tunnel or IP-logger hosts and bare IPs, over raw sockets, through curl with
 * $(whoami) substituted, or as DNS labels.
 */

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule exfil_chat_webhook
{
    meta:
        description = "Sends host, user or credential data to a Discord, Telegram or Slack webhook."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $webhook_discord = /discord(app)?\.com\/api\/webhooks\//
        $webhook_telegram = "api.telegram.org/bot"
        $webhook_slack = "hooks.slack.com/services/"
        // a webhook or bot token written into the code: the sender owns the channel
        $token_discord = /discord(app)?\.com\/api\/webhooks\/\d{17,20}\/[\w-]{20,100}/
        // <bot id>:AA<secret>; the digit before the colon is checked in the condition (cheaper than \d atoms)
        $bot_secret_telegram = /:AA[\w-]{30,40}['"\/]/
        $token_slack = /hooks\.slack\.com\/services\/T[A-Z0-9]{8,12}\/B[A-Z0-9]{8,12}\/[A-Za-z0-9]{20,32}/
        $data_user = /\b(getpass\s{0,2}\.\s{0,2}getuser|os\s{0,2}\.\s{0,2}getlogin)\s{0,2}\(/
        $data_host = /\b(gethostname|platform\s{0,2}\.\s{0,2}node|getfqdn)\s{0,2}\(/
        $data_ip = /(api\.ipify\.org|ipinfo\.io|ip-api\.com|ifconfig\.me|checkip\.amazonaws\.com|icanhazip\.com|wtfismyip\.com)/
        $data_env = /\b(json\.dumps|str|dict)\s{0,2}\(\s{0,2}(dict\s{0,2}\(\s{0,2})?os\.environ\b/
        $data_ssh = /\.ssh['"]?\s{0,2}[\\\/,]/
        $data_browser = "Login Data"
        $data_leveldb = "leveldb"
        $data_screenshot = /ImageGrab\s{0,2}\.\s{0,2}grab\s{0,2}\(/
        $data_mac = /uuid\s{0,2}\.\s{0,2}getnode\s{0,2}\(/
        $data_cookies = /Network['",\s]{0,4}[\\\/,]{1,2}['",\s]{0,4}Cookies/

    condition:
        any of ($webhook_*) and (
            2 of ($data_*) or
            (
                (
                    any of ($token_*) or
                    for any i in (1..#bot_secret_telegram) : (
                        uint8(@bot_secret_telegram[i] - 1) >= 0x30 and uint8(@bot_secret_telegram[i] - 1) <= 0x39
                    )
                ) and any of ($data_*)
            )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule exfil_paste_service
{
    meta:
        description = "Uploads host, user or credential data to a paste, file-drop or request-capture service."
        weight = 6
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $svc = /(pastebin\.com\/api|hastebin\.com\/documents|api\.paste\.ee|:\/\/transfer\.sh|:\/\/file\.io|:\/\/0x0\.st|termbin\.com|gofile\.io\/(uploadFile|contents|upload)|anonfiles\.com\/upload|:\/\/bashupload\.com|:\/\/webhook\.site\/|\.m\.pipedream\.net|requestbin\.(net|com)|\.(oast\.(fun|live|me|online|pro|site)|interact\.sh|burpcollaborator\.net|oastify\.com|dnslog\.cn|ceye\.io)\b|\.(ngrok\.io|ngrok-free\.app|ngrok\.app)\b)/
        $data_user = /\b(getpass\s{0,2}\.\s{0,2}getuser|os\s{0,2}\.\s{0,2}getlogin)\s{0,2}\(/
        $data_host = /\b(gethostname|platform\s{0,2}\.\s{0,2}node|getfqdn)\s{0,2}\(/
        $data_env = /\b(json\.dumps|str|dict)\s{0,2}\(\s{0,2}(dict\s{0,2}\(\s{0,2})?os\.environ\b/
        $data_ssh = /\.ssh['"]?\s{0,2}[\\\/,]/
        $data_aws = /\.aws['"]?\s{0,2}[\\\/,]/
        // read on this host (not a path named in an injection payload or a test)
        $data_passwd = /(\bopen\s{0,2}\(\s{0,2}['"]|\bcat\s{1,4})\/etc\/(passwd|shadow)\b/
        $data_browser = "Login Data"
        $data_whoami = /['"]whoami['"]/

    condition:
        // the data is collected near where the service is named (not a docstring example of the URL
        // in one place and an unrelated `whoami` call elsewhere in a large module)
        for any i in (1..#svc) : (
            for any of ($data_*) : ( $ in (@svc[i] - 2000..@svc[i] + 2000) )
        )
}

rule exfil_install_recon_beacon
{
    meta:
        description = "Install, import or start-up code that sends the host name and user name over the network (dependency-confusion recon)."
        weight = 6
        author = "dragonfly-hybrid"
        filetype = "setup.py __init__.py .pth sitecustomize.py usercustomize.py"

    strings:
        $host = /\b(gethostname|platform\s{0,2}\.\s{0,2}node|getfqdn|os\s{0,2}\.\s{0,2}uname)\s{0,2}\(/
        $user_getuser = /\b(getpass\s{0,2}\.\s{0,2}getuser|os\s{0,2}\.\s{0,2}getlogin)\s{0,2}\(/
        $user_whoami = /['"]whoami['"]/
        $user_pwd = /\bpwd\s{0,2}\.\s{0,2}getpwuid\s{0,2}\(/
        $net_requests = /\b(requests|httpx)\s{0,2}\.\s{0,2}(get|post|put)\s{0,2}\(/
        $net_urllib = /\b(urlopen|urllib\.request\.Request)\s{0,2}\(/
        $net_http = /\b(HTTPConnection|HTTPSConnection)\s{0,2}\(/
        $net_dns = /\b(gethostbyname|getaddrinfo)\s{0,2}\(\s{0,2}(f['"]|['"][^'"\n]{0,100}['"]\s{0,2}(%|\.format|\+))/
        $net_nslookup = /['"](nslookup|dig|ping)\s/

    condition:
        $host and any of ($user_*) and any of ($net_*)
}

rule exfil_capture_service_beacon
{
    meta:
        description = "Install, import or start-up code calls a request-capture, out-of-band, tunnel or IP-logger host, or a bare public IP address: a beacon to whoever runs it."
        weight = 6
        author = "dragonfly-hybrid"
        filetype = "setup.py __init__.py .pth sitecustomize.py usercustomize.py"

    strings:
        $host = /https?:\/\/[\w.-]{1,100}\.(m\.pipedream\.net|pipedream\.net|webhook\.site|oast\.(fun|live|me|online|pro|site)|interact\.sh|interactsh\.com|burpcollaborator\.net|oastify\.com|dnslog\.cn|ceye\.io|requestbin\.(net|com)|ngrok\.io|ngrok-free\.app|ngrok\.app|trycloudflare\.com|loca\.lt|serveo\.net|requestcatcher\.com|beeceptor\.com|canarytokens\.com|herokuapp\.com|repl\.co|glitch\.me)\b/
        // IP-logger links: whoever runs the code reports its address
        $host_iplogger = /https?:\/\/(www\.)?(iplogger\.(com|org|ru|co|info)|grabify\.link|2no\.co|yip\.su|ipgrabber\.ru|blasze\.com)\//
        $host_bare = /https?:\/\/(webhook\.site|requestbin\.(net|com)|hookb\.in)\//
        // a bare public IP address (loopback, private and link-local ranges are left out)
        $host_ip = /https?:\/\/\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(:|\/|'|")/
        $private = /https?:\/\/(127\.|10\.|0\.|192\.168\.|169\.254\.|172\.(1[6-9]|2\d|3[01])\.)/
        $call_requests = /\b(requests|httpx)\s{0,2}\.\s{0,2}(get|post|put|request)\s{0,2}\(/
        $call_urllib = /\b(urlopen|Request|HTTPSConnection|HTTPConnection)\s{0,2}\(/
        $call_dns = /\b(gethostbyname|getaddrinfo|nslookup|dig)\b/
        $call_shell = /\b(curl|wget)\s/

    condition:
        (
            any of ($host, $host_bare, $host_iplogger) or
            for any i in (1..#host_ip) : ( not $private at @host_ip[i] )
        ) and any of ($call_*)
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule exfil_shell_recon_beacon
{
    meta:
        description = "Launches curl, wget or nslookup with the output of whoami, hostname, id or uname substituted into the request (install-time recon beacon in shell form)."
        weight = 6
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $fetcher = /\b(curl|wget|nslookup|dig|ping)\s/
        $substitution = /(\$\(\s{0,2}|`)(whoami|hostname|id|uname(\s-a)?|pwd|cat \/etc\/(passwd|hostname))\s{0,2}(\)|`)/
        $launch_os = /\bos\s{0,2}\.\s{0,2}(system|popen)\s{0,2}\(/
        $launch_subprocess = /\bsubprocess\s{0,2}\.\s{0,2}(Popen|call|run|check_call|check_output|getoutput)\s{0,2}\(/

    condition:
        any of ($launch_*) and
        for any i in (1..#substitution) : ( $fetcher in (@substitution[i] - 300..@substitution[i]) )
}

rule exfil_host_data_in_url
{
    meta:
        description = "Builds a request URL whose host part carries the machine's host or user name (DNS or HTTP exfiltration to a wildcard domain)."
        weight = 6
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // "http://" + socket.gethostname() + ".x.example", f"https://{getpass.getuser()}.x.example/"
        $concat = /['"]https?:\/\/['"]\s{0,2}\+\s{0,2}[\w.]{0,30}(gethostname|getfqdn|getuser|getlogin|node|uname)\b/
        $fstring = /\bf['"]https?:\/\/\{[^}\n]{0,60}(gethostname|getfqdn|getuser|getlogin|uname|node)\s{0,2}\([^}\n]{0,30}\}\.[\w-]{1,63}\./

    condition:
        any of them
}

rule exfil_install_socket_beacon
{
    meta:
        description = "Install, import or start-up code (setup.py, __init__.py, .pth, sitecustomize.py) opens a raw socket to a hard-coded IP address and sends host details (install-time beacon without HTTP)."
        weight = 6
        author = "dragonfly-hybrid"
        filetype = "setup.py __init__.py .pth sitecustomize.py usercustomize.py"

    strings:
        $connect_ip = /\.\s{0,2}connect\s{0,2}\(\s{0,2}\(\s{0,2}['"]\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}['"]\s{0,2},\s{0,2}\d{2,5}\s{0,2}\)\s{0,2}\)/
        $send = /\.\s{0,2}(send|sendall|sendto)\s{0,2}\(/
        $host = /\b(gethostname|getfqdn|getuser|getlogin|platform\s{0,2}\.\s{0,2}(node|release|version|platform|uname)|os\s{0,2}\.\s{0,2}uname)\s{0,2}\(/

    condition:
        $connect_ip and $send and $host
}
