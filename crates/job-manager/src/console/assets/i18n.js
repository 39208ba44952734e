// Every text of the console, in two message catalogues (English, 简体中文). `t(key, vars)`
// fills {name}-style placeholders. The language is kept in localStorage.

export const LANGS = [["en", "English"], ["zh", "中文"]];

const en = {
  "app.title": "job-manager console",
  "nav.label": "Main", "nav.deployments": "Deployments", "nav.create": "Create", "nav.artifacts": "Artifacts",
  "nav.tokens": "API tokens", "nav.system": "System", "nav.signout": "Sign out",
  "settings.language": "Language", "settings.namespace": "Namespace", "settings.timezone": "Time zone",
  "login.title": "Sign in", "login.token": "API token",
  "login.help": "Paste an API token (or the bootstrap token). It is kept only for this browser tab's session.",
  "login.submit": "Sign in", "login.invalid": "This token is not valid (unknown or revoked).",
  "login.expired": "Your session ended: the token is no longer accepted. Sign in again.",
  "role.viewer": "viewer", "role.editor": "editor", "role.owner": "owner", "role.none": "no role",
  "role.needs": "Your role is {role}: this needs {need} or higher.",
  "state.RUNNING": "RUNNING", "state.SUSPENDED": "SUSPENDED", "state.CANCELLED": "CANCELLED",
  "state.TRANSITIONING": "TRANSITIONING", "state.FAILED": "FAILED", "state.FINISHED": "FINISHED", "state.UNKNOWN": "UNKNOWN",
  "list.title": "Deployments", "list.create": "Create deployment", "list.count": "{n} of {total} deployments",
  "filter.name": "Name", "filter.label": "Labels", "filter.state": "State", "filter.any": "Any state",
  "col.name": "Name", "col.desired": "Desired", "col.current": "State", "col.target": "Target",
  "col.parallelism": "Parallelism", "col.labels": "Labels", "col.since": "Running since",
  "col.type": "Type", "col.status": "Status", "col.reason": "Reason", "col.message": "Message", "col.time": "Time",
  "col.event": "Event", "col.job": "Job", "col.state": "State", "col.started": "Started", "col.ended": "Ended",
  "col.restarts": "Restarts", "col.failure": "Failure", "col.origin": "Origin", "col.location": "Location",
  "col.file": "File", "col.size": "Size", "col.modified": "Modified", "col.created": "Created", "col.role": "Role",
  "create.title": "Create deployment", "create.standard": "Standard", "create.yaml": "YAML",
  "create.name": "Name", "create.target": "Deployment target", "create.jar": "JAR from artifacts",
  "create.jarPick": "— choose an uploaded JAR —", "create.jarUpload": "Upload a JAR", "create.jarUri": "JAR URI",
  "create.entryClass": "Entry class", "create.mainArgs": "Main arguments", "create.parallelism": "Parallelism",
  "create.labels": "Labels (key=value, comma-separated)", "create.state": "Initial state",
  "create.advanced": "Advanced", "create.default": "(default)", "create.upgrade": "Upgrade strategy",
  "create.restore": "Restore strategy", "create.jmMemory": "JobManager memory (e.g. 1g)",
  "create.tmMemory": "TaskManager memory (e.g. 1536m)", "create.schedule": "Savepoint schedule (cron with seconds)",
  "create.flinkConf": "Flink configuration (key: value per line)", "create.loggers": "Log levels (logger: LEVEL per line)",
  "create.kvInvalid": "Write one key: value per line; \"{line}\" has no colon.",
  "create.labelsInvalid": "Labels are key=value pairs; \"{part}\" is not.", "create.submit": "Create",
  "actions.label": "Deployment actions", "tabs.label": "Deployment sections",
  "action.start": "Start", "action.suspend": "Suspend", "action.cancel": "Cancel job", "action.savepoint": "Take savepoint",
  "action.clone": "Clone", "action.delete": "Delete", "action.flinkUi": "Flink UI",
  "why.alreadyRunning": "The desired state is already RUNNING.", "why.notRunning": "Only while the job is RUNNING.",
  "why.alreadyCancelled": "Already cancelled.", "why.stopFirst": "Suspend or cancel the job before deleting.",
  "confirm.yes": "Confirm", "confirm.no": "Keep it",
  "confirm.cancel": "Cancel the job of {name}? State since its last savepoint is lost.",
  "confirm.delete": "Delete {name}? Its configuration and history are removed; savepoint files are kept.",
  "confirm.deleteArtifact": "Delete the artifact {name}? Deployments using it cannot start again.",
  "confirm.deleteToken": "Delete the API token {name}? Everything using it loses access at once.",
  "tab.overview": "Overview", "tab.configure": "Configure", "tab.events": "Events", "tab.jobs": "Jobs", "tab.savepoints": "Savepoints",
  "ov.job": "Running job", "ov.jar": "JAR", "ov.modified": "Last changed", "ov.failure": "Failure",
  "ov.conditions": "Conditions", "ov.noConditions": "No conditions reported.",
  "events.none": "No events yet.", "jobs.none": "No jobs yet.", "savepoints.none": "No savepoints yet.",
  "config.label": "Deployment (YAML)",
  "config.help": "Edit and save. resourceVersion guards against overwriting someone else's change.",
  "config.save": "Save", "config.reload": "Reload", "config.saved": "Saved (resourceVersion {rv}).",
  "config.conflict": "Conflict: the deployment was changed by someone else since you opened it. Your text is kept; Reload to see the current version.",
  "artifacts.title": "Artifacts", "artifacts.drop": "Drop JAR files here", "artifacts.choose": "or choose a file",
  "artifacts.limit": "At most 50 MB per file.", "artifacts.none": "No artifacts yet.", "artifacts.delete": "Delete",
  "artifacts.download": "Download", "artifacts.downloadFailed": "Download of {name} failed ({status}).",
  "system.version": "Version",
  "artifacts.tooLarge": "{name} is {size}: larger than the 50 MB limit, not uploaded.", "artifacts.uploaded": "{name} uploaded.",
  "tokens.title": "API tokens", "tokens.name": "Name", "tokens.role": "Role", "tokens.create": "Create token",
  "tokens.delete": "Delete", "tokens.copy": "Copy",
  "tokens.once": "The token's secret, shown this once (only its hash is stored):",
  "system.title": "System", "system.tzHelp": "Only how times are displayed; the server keeps UTC.",
  "system.now": "Current time", "system.language": "Language",
  "system.licence": "job-manager, part of flink-suite. Apache License 2.0. The console uses no third-party code.",
};

const zh = {
  "app.title": "job-manager 控制台",
  "nav.label": "主导航", "nav.deployments": "作业部署", "nav.create": "新建", "nav.artifacts": "资源文件",
  "nav.tokens": "API 令牌", "nav.system": "系统", "nav.signout": "退出",
  "settings.language": "语言", "settings.namespace": "命名空间", "settings.timezone": "时区",
  "login.title": "登录", "login.token": "API 令牌",
  "login.help": "粘贴 API 令牌（或引导令牌）。令牌只保存在当前浏览器标签页的会话中。",
  "login.submit": "登录", "login.invalid": "令牌无效（不存在或已吊销）。",
  "login.expired": "会话已结束：令牌不再有效，请重新登录。",
  "role.viewer": "查看者", "role.editor": "编辑者", "role.owner": "所有者", "role.none": "无角色",
  "role.needs": "您的角色是{role}：此操作需要{need}或更高角色。",
  "state.RUNNING": "运行中", "state.SUSPENDED": "已暂停", "state.CANCELLED": "已取消",
  "state.TRANSITIONING": "转换中", "state.FAILED": "失败", "state.FINISHED": "已完成", "state.UNKNOWN": "未知",
  "list.title": "作业部署", "list.create": "新建部署", "list.count": "显示 {n} / 共 {total} 个部署",
  "filter.name": "名称", "filter.label": "标签", "filter.state": "状态", "filter.any": "全部状态",
  "col.name": "名称", "col.desired": "期望状态", "col.current": "状态", "col.target": "部署目标",
  "col.parallelism": "并行度", "col.labels": "标签", "col.since": "运行开始时间",
  "col.type": "类型", "col.status": "状态值", "col.reason": "原因", "col.message": "信息", "col.time": "时间",
  "col.event": "事件", "col.job": "作业实例", "col.state": "状态", "col.started": "开始时间", "col.ended": "结束时间",
  "col.restarts": "重启次数", "col.failure": "失败原因", "col.origin": "来源", "col.location": "位置",
  "col.file": "文件", "col.size": "大小", "col.modified": "修改时间", "col.created": "创建时间", "col.role": "角色",
  "create.title": "新建部署", "create.standard": "标准", "create.yaml": "YAML",
  "create.name": "名称", "create.target": "部署目标", "create.jar": "从资源文件选择 JAR",
  "create.jarPick": "— 选择已上传的 JAR —", "create.jarUpload": "上传 JAR", "create.jarUri": "JAR URI",
  "create.entryClass": "入口类", "create.mainArgs": "启动参数", "create.parallelism": "并行度",
  "create.labels": "标签（key=value，逗号分隔）", "create.state": "初始状态",
  "create.advanced": "高级", "create.default": "（默认）", "create.upgrade": "升级策略",
  "create.restore": "恢复策略", "create.jmMemory": "JobManager 内存（例如 1g）",
  "create.tmMemory": "TaskManager 内存（例如 1536m）", "create.schedule": "定时快照（带秒的 cron）",
  "create.flinkConf": "Flink 配置（每行一个 key: value）", "create.loggers": "日志级别（每行一个 logger: LEVEL）",
  "create.kvInvalid": "每行写一个 key: value；\"{line}\" 中没有冒号。",
  "create.labelsInvalid": "标签应为 key=value 形式；\"{part}\" 不是。", "create.submit": "创建",
  "actions.label": "部署操作", "tabs.label": "部署详情",
  "action.start": "启动", "action.suspend": "暂停", "action.cancel": "终止作业", "action.savepoint": "创建快照",
  "action.clone": "复制", "action.delete": "删除", "action.flinkUi": "Flink UI",
  "why.alreadyRunning": "期望状态已经是运行中。", "why.notRunning": "仅在作业运行中可用。",
  "why.alreadyCancelled": "已取消。", "why.stopFirst": "请先暂停或终止作业再删除。",
  "confirm.yes": "确认", "confirm.no": "保留",
  "confirm.cancel": "终止 {name} 的作业？自上次快照以来的状态将丢失。",
  "confirm.delete": "删除 {name}？其配置和历史将被移除；快照文件会保留。",
  "confirm.deleteArtifact": "删除资源文件 {name}？使用它的部署将无法再次启动。",
  "confirm.deleteToken": "删除 API 令牌 {name}？所有使用它的调用方将立即失去访问权限。",
  "tab.overview": "概览", "tab.configure": "配置", "tab.events": "事件", "tab.jobs": "作业实例", "tab.savepoints": "快照",
  "ov.job": "运行中的作业实例", "ov.jar": "JAR", "ov.modified": "最近修改", "ov.failure": "失败",
  "ov.conditions": "运行状况", "ov.noConditions": "没有上报的运行状况。",
  "events.none": "暂无事件。", "jobs.none": "暂无作业实例。", "savepoints.none": "暂无快照。",
  "config.label": "部署（YAML）",
  "config.help": "编辑后保存。resourceVersion 可防止覆盖他人的修改。",
  "config.save": "保存", "config.reload": "重新加载", "config.saved": "已保存（resourceVersion {rv}）。",
  "config.conflict": "冲突：在您打开之后，此部署已被他人修改。您的文本已保留；点击重新加载查看当前版本。",
  "artifacts.title": "资源文件", "artifacts.drop": "将 JAR 文件拖放到此处", "artifacts.choose": "或选择文件",
  "artifacts.limit": "每个文件最大 50 MB。", "artifacts.none": "暂无资源文件。", "artifacts.delete": "删除",
  "artifacts.download": "下载", "artifacts.downloadFailed": "下载 {name} 失败（{status}）。",
  "system.version": "版本",
  "artifacts.tooLarge": "{name} 大小为 {size}，超过 50 MB 上限，未上传。", "artifacts.uploaded": "{name} 已上传。",
  "tokens.title": "API 令牌", "tokens.name": "名称", "tokens.role": "角色", "tokens.create": "创建令牌",
  "tokens.delete": "删除", "tokens.copy": "复制",
  "tokens.once": "令牌密钥仅显示这一次（服务端只保存其哈希）：",
  "system.title": "系统", "system.tzHelp": "仅影响时间的显示方式；服务端始终使用 UTC。",
  "system.now": "当前时间", "system.language": "语言",
  "system.licence": "job-manager，flink-suite 的一部分。Apache License 2.0。控制台不包含第三方代码。",
};

export const CATALOGUES = { en, zh };

let current = localStorage.getItem("jm.lang") || "en";
if (!CATALOGUES[current]) current = "en";

export const lang = () => current;

export function setLang(l) {
  if (CATALOGUES[l]) {
    current = l;
    localStorage.setItem("jm.lang", l);
  }
}

export function t(key, vars) {
  const s = CATALOGUES[current][key] ?? en[key] ?? key;
  return vars ? s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m)) : s;
}
