/*
 * dragonfly-hybrid bundled rules: credential theft.
 *
 * Browser password and cookie stores, Discord tokens, SSH keys, cloud and developer credential
 * files, shell history and the process environment, each combined with the decryption, archiving or
 * sending that turns reading them into theft.
 */

rule credentials_browser_store
{
    meta:
        description = "Reads Chromium or Firefox saved passwords with the keys or queries needed to decrypt them, or decrypts browser cookies and sends them out."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw"

    strings:
        $chromium_root = "User Data"
        $chromium_logins = "Login Data"
        $chromium_webdata = "Web Data"
        $chromium_cookies = /Network['",\s]{0,4}[\\\/,]{1,2}['",\s]{0,4}Cookies/
        $chromium_key = "encrypted_key"
        $chromium_dpapi = "CryptUnprotectData"
        $chromium_column = "password_value"
        $firefox_logins = "logins.json"
        $firefox_key4 = "key4.db"
        $firefox_nss = "PK11SDR_Decrypt"
        $firefox_field = "encryptedPassword"
        $net_post = /\b(requests|httpx|session)\s{0,2}\.\s{0,2}(post|put)\s{0,2}\(/
        $net_urllib = /\b(urlopen|urllib\.request\.Request)\s{0,2}\(/
        $net_smtp = /\bsmtplib\s{0,2}\.\s{0,2}SMTP(_SSL)?\s{0,2}\(/
        $net_webhook = /(discord(app)?\.com\/api\/webhooks|api\.telegram\.org\/bot|hooks\.slack\.com\/services)/
        $out_socket = /\.\s{0,2}(sendall|sendto)\s{0,2}\(/
        $out_ftp = /\b(storbinary|storlines)\s{0,2}\(/
        $out_archive = /\b(zipfile\s{0,2}\.\s{0,2}ZipFile|shutil\s{0,2}\.\s{0,2}make_archive)\s{0,2}\(/
        $out_upload = /\bfiles\s{0,2}=\s{0,2}\{/

    condition:
        // saved passwords: the store, the means to decrypt or query it, and a way out (credential
        // forensics toolkits decrypt the same stores and only print them)
        (
            (
                (
                    $chromium_root and
                    ($chromium_logins or $chromium_webdata) and
                    ($chromium_key or $chromium_dpapi or $chromium_column)
                ) or
                ($chromium_logins and $chromium_column) or
                ($firefox_logins and ($firefox_key4 or $firefox_nss) and ($firefox_nss or $firefox_field))
            ) and
            (any of ($net_*) or any of ($out_*))
        ) or
        // cookies: decrypting them is what cookie libraries do too, so only count it when they are sent out
        (
            $chromium_root and $chromium_cookies and ($chromium_key or $chromium_dpapi) and
            any of ($net_*)
        )
}

rule credentials_discord_token
{
    meta:
        description = "Searches Discord LevelDB storage for user tokens using token regexes or the encrypted token prefix."
        weight = 9
        author = "dragonfly-hybrid"
        filetype = ".py .pyw"

    strings:
        $discord = "discord" nocase
        $leveldb = /Local Storage['",\s]{0,4}[\\\/,]{1,2}['",\s]{0,4}leveldb/
        // encrypted tokens in the LevelDB files of the desktop client are prefixed with this marker
        $encrypted_prefix = "dQw4w9WgXcQ:"
        // the source text of the usual token regexes: mfa\.[\w-]{84} and [\w-]{24}\.[\w-]{6}\.[\w-]{27}
        $mfa_regex = "mfa\\.["
        $token_regex = /\{2[3-6](,[0-9]{1,3})?\}\\\.\[[^\]\n]{1,24}\]\{6\}\\\./
        $users_me = "/users/@me"

    condition:
        $discord and (
            ($encrypted_prefix and ($leveldb or $token_regex or $users_me)) or
            ($leveldb and ($mfa_regex or $token_regex)) or
            ($token_regex and $users_me)
        )
}

rule credentials_ssh_key_exfil
{
    meta:
        description = "Reads an SSH private key from ~/.ssh and sends data over HTTP, mail or FTP from the same file."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $key = /\.ssh['"]?\s{0,2}[\\\/,+]{1,2}\s{0,2}['"]?\s{0,2}id_(rsa|dsa|ecdsa|ed25519)\b/
        $net_post = /\b(requests|httpx|session)\s{0,2}\.\s{0,2}(post|put)\s{0,2}\(/
        $net_urllib = /\b(urlopen|urllib\.request\.Request)\s{0,2}\(/
        $net_smtp = /\bsmtplib\s{0,2}\.\s{0,2}SMTP(_SSL)?\s{0,2}\(/
        $net_ftp = /\b(storbinary|storlines)\s{0,2}\(/
        $net_webhook = /(discord(app)?\.com\/api\/webhooks|api\.telegram\.org\/bot|hooks\.slack\.com\/services)/

    condition:
        $key and any of ($net_*)
}

rule credentials_dev_secrets_harvest
{
    meta:
        description = "Collects credential files of two or more cloud or developer tools (AWS, gcloud, Azure, kube, Docker, PyPI, npm, git) and sends data out."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $cred_aws = /\.aws['"]?\s{0,2}[\\\/,+]{1,2}\s{0,2}['"]?\s{0,2}credentials/
        $cred_gcloud = /gcloud['"]?\s{0,2}[\\\/,+]{1,2}\s{0,2}['"]?\s{0,2}(application_default_credentials\.json|credentials\.db|access_tokens\.db|legacy_credentials)/
        $cred_azure = /\.azure['"]?\s{0,2}[\\\/,+]{1,2}\s{0,2}['"]?\s{0,2}(accessTokens\.json|msal_token_cache|azureProfile\.json)/
        $cred_kube = /\.kube['"]?\s{0,2}[\\\/,+]{1,2}\s{0,2}['"]?\s{0,2}config\b/
        $cred_docker = /\.docker['"]?\s{0,2}[\\\/,+]{1,2}\s{0,2}['"]?\s{0,2}config\.json/
        $cred_pypirc = ".pypirc"
        $cred_git = ".git-credentials"
        $cred_npm = ".npmrc"
        $net_post = /\b(requests|httpx|session)\s{0,2}\.\s{0,2}(post|put)\s{0,2}\(/
        $net_urllib = /\b(urlopen|urllib\.request\.Request)\s{0,2}\(/
        $net_smtp = /\bsmtplib\s{0,2}\.\s{0,2}SMTP(_SSL)?\s{0,2}\(/
        $net_ftp = /\b(storbinary|storlines)\s{0,2}\(/
        $net_webhook = /(discord(app)?\.com\/api\/webhooks|api\.telegram\.org\/bot|hooks\.slack\.com\/services)/

    condition:
        2 of ($cred_*) and any of ($net_*)
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule credentials_environ_exfil
{
    meta:
        description = "Serializes the whole process environment (os.environ) and sends it over the network."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // requests.post(url, json=dict(os.environ)), data=os.environ.copy()
        $post_environ = /\b(json|data|params)\s{0,2}=\s{0,2}(dict\s{0,2}\(\s{0,2})?os\.environ(\.copy\s{0,2}\(\s{0,2}\))?\s{0,2}[,)]/
        // json.dumps(dict(os.environ)), str(os.environ), base64.b64encode(str(os.environ).encode())
        $serialize = /\b(json\.dumps|str|repr|urlencode|b64encode|pformat)\s{0,2}\(\s{0,2}(str\s{0,2}\(\s{0,2})?(dict\s{0,2}\(\s{0,2})?os\.environ(\.copy\s{0,2}\(\s{0,2}\)|\.items\s{0,2}\(\s{0,2}\))?\s{0,2}\)/
        // os.environ.__str__(), os.popen("env").read(), subprocess.check_output("printenv")
        $serialize_method = /\bos\.environ\s{0,2}\.\s{0,2}__(str|repr)__\s{0,2}\(/
        // f"...{dict(os.environ).keys()}...", f"{os.environ}"
        $serialize_fstring = /\{\s{0,2}(dict\s{0,2}\(\s{0,2})?os\.environ(\s{0,2}\))?(\.(keys|items|values)\s{0,2}\(\s{0,2}\))?\s{0,2}(!r)?\}/
        $serialize_shell = /\b(popen|check_output|getoutput|run)\s{0,2}\(\s{0,2}\[?\s{0,2}['"](env|printenv|set)['"]/
        $net_post = /\b(requests|httpx|session)\s{0,2}\.\s{0,2}(post|put|get)\s{0,2}\(/
        $net_urllib = /\b(urlopen|urllib\.request\.Request)\s{0,2}\(/
        $net_socket = /\.\s{0,2}(sendall|sendto)\s{0,2}\(/
        $net_webhook = /(discord(app)?\.com\/api\/webhooks|api\.telegram\.org\/bot|hooks\.slack\.com\/services)/

    condition:
        (
            $post_environ and
            for any i in (1..#post_environ) : (
                for any of ($net_*) : ( $ in (@post_environ[i] - 300..@post_environ[i]) )
            )
        ) or
        for any i in (1..#serialize) : (
            for any of ($net_*) : ( $ in (@serialize[i] - 300..@serialize[i] + 800) )
        ) or
        for any i in (1..#serialize_method) : (
            for any of ($net_*) : ( $ in (@serialize_method[i] - 300..@serialize_method[i] + 800) )
        ) or
        for any i in (1..#serialize_fstring) : (
            for any of ($net_*) : ( $ in (@serialize_fstring[i] - 300..@serialize_fstring[i] + 800) )
        ) or
        for any i in (1..#serialize_shell) : (
            for any of ($net_*) : ( $ in (@serialize_shell[i] - 300..@serialize_shell[i] + 800) )
        )
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule credentials_files_archive_upload
{
    meta:
        description = "Archives SSH keys, shell history, hosts or git credential files and uploads the archive (curl -F, a multipart POST or FTP)."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $file_ssh = /\.ssh\b/
        $file_history = /\.(bash|zsh|python|mysql|psql)_history\b/
        $file_hosts = "/etc/hosts"
        $file_git = /\.(git-credentials|gitconfig|netrc|pgpass)\b/
        $archive = /\b(zipfile\s{0,2}\.\s{0,2}ZipFile|make_archive|tarfile\s{0,2}\.\s{0,2}open|zip\s{1,4}-[rqy]{1,3}\s|tar\s{1,4}-?c[zvjf]{1,4}\s)/
        // curl ... -F: two patterns and an offset check, not one regex reading up to 200 bytes from
        // every "curl " (a flood of it took 1.8 s for 2 MB)
        $curl = /\bcurl\s/
        $curl_form = /\s-F\s/
        $upload_files = /\bfiles\s{0,2}=\s{0,2}[{\[(]/
        $upload_ftp = /\b(storbinary|storlines)\s{0,2}\(/

    condition:
        2 of ($file_*) and $archive and (
            any of ($upload_*) or
            for any i in (1..#curl) : ( $curl_form in (@curl[i] + 4..@curl[i] + 205) )
        )
}
