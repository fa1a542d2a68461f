"""Configurable vocabularies for the rule extractor: course catalogue, competitors, decision roles.

Why data and not code: every source sells something different (an IT bootcamp, a 装修 company, a car
dealer), so the words that mean "product of interest" or "competitor" must be per source. The defaults
below cover education (the seed's main market) plus SaaS CRM, 装修, 汽车 and 保险; a source narrows or
extends them with `Lexicons.merged(...)` from its config.

Surface forms are matched case-insensitively at word boundaries; aliases resolve to one canonical name
so "传智播客" and "黑马" both report as "黑马程序员".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

SELF_DECIDES = "本人决策"

DEFAULT_COURSES: list[str] = [
    # IT and vocational training
    "Python", "Java", "前端", "数据分析", "大数据", "人工智能", "软件测试", "UI设计", "网络安全", "C++", "Go语言",
    "嵌入式", "云计算", "产品经理", "新媒体运营", "短视频运营", "电商运营", "平面设计", "室内设计",
    # languages and study abroad
    "雅思", "托福", "GRE", "英语口语", "商务英语", "日语", "韩语", "德语", "法语", "四六级",
    # exams and certificates
    "考研", "专升本", "教师资格证", "公务员考试", "事业编", "会计", "CPA", "ACCA", "CMA", "PMP", "MBA", "软考",
    "一建", "二建", "法考", "心理咨询师", "健康管理师", "人力资源管理师", "消防工程师", "造价工程师",
    # K12 and kids
    "少儿编程", "少儿英语", "数学", "英语", "语文", "物理", "化学", "作文", "机器人编程", "美术", "钢琴",
    # SaaS
    "SCRM", "CRM", "ERP", "呼叫中心", "OA", "HR系统", "财务软件", "进销存", "企业网盘",
    # 装修
    "全包", "半包", "整装", "旧房翻新", "局部改造", "软装", "全屋定制",
    # 汽车
    "SUV", "MPV", "轿车", "皮卡", "跑车",
    # 保险
    "重疾险", "医疗险", "年金险", "寿险", "意外险", "教育金", "养老金", "车险",
]

DEFAULT_COURSE_ALIASES: dict[str, str] = {
    "派森": "Python", "python全栈": "Python", "python开发": "Python",
    "java后端": "Java", "java开发": "Java",
    "web前端": "前端", "前端开发": "前端", "h5前端": "前端",
    "数分": "数据分析", "bi分析": "数据分析", "商业分析": "数据分析",
    "ai": "人工智能", "机器学习": "人工智能", "深度学习": "人工智能", "大模型": "人工智能", "aigc": "人工智能",
    "测试开发": "软件测试", "自动化测试": "软件测试", "软件测试工程师": "软件测试",
    "ui": "UI设计", "交互设计": "UI设计", "视觉设计": "UI设计",
    "网安": "网络安全", "渗透测试": "网络安全",
    "golang": "Go语言", "go语言开发": "Go语言",
    "ielts": "雅思", "雅思考试": "雅思", "toefl": "托福", "托福考试": "托福",
    "口语": "英语口语", "英语口语课": "英语口语", "外教口语": "英语口语",
    "日语n2": "日语", "日语n1": "日语", "日语课": "日语",
    "英语四级": "四六级", "英语六级": "四六级", "四级": "四六级", "六级": "四六级",
    "考研究生": "考研", "研究生考试": "考研", "考研政治": "考研", "考研英语": "考研", "考研数学": "考研",
    "二战考研": "考研",
    "统招专升本": "专升本", "成考专升本": "专升本",
    "教资": "教师资格证", "教师证": "教师资格证", "教师资格": "教师资格证", "教师资格考试": "教师资格证",
    "考公": "公务员考试", "国考": "公务员考试", "省考": "公务员考试", "公考": "公务员考试", "公务员": "公务员考试",
    "事业单位": "事业编", "事业单位考试": "事业编", "三支一扶": "事业编",
    "初级会计": "会计", "中级会计": "会计", "会计证": "会计", "会计实操": "会计", "初会": "会计", "中级会计师": "会计",
    "注会": "CPA", "注册会计师": "CPA",
    "项目管理": "PMP", "pmp认证": "PMP",
    "mba联考": "MBA", "在职mba": "MBA", "emba": "MBA", "工商管理硕士": "MBA", "mpacc": "MBA",
    "信息系统项目管理师": "软考", "系统集成项目管理工程师": "软考", "软考高项": "软考",
    "一级建造师": "一建", "二级建造师": "二建",
    "法律职业资格": "法考", "司法考试": "法考",
    "心理咨询": "心理咨询师",
    "人力资源师": "人力资源管理师",
    "python启蒙": "少儿编程", "少儿python": "少儿编程", "scratch": "少儿编程", "图形化编程": "少儿编程",
    "乐高编程": "少儿编程",
    "自然拼读": "少儿英语", "剑桥英语": "少儿英语",
    "scrm系统": "SCRM", "私域运营系统": "SCRM",
    "crm系统": "CRM", "客户管理系统": "CRM", "销售管理系统": "CRM", "客户关系管理": "CRM",
    "erp系统": "ERP", "外呼系统": "呼叫中心", "呼叫系统": "呼叫中心", "智能外呼": "呼叫中心", "云呼叫中心": "呼叫中心",
    "全包装修": "全包", "半包装修": "半包", "清包": "半包", "整装套餐": "整装", "拎包入住": "整装",
    "翻新": "旧房翻新", "老房翻新": "旧房翻新", "旧房改造": "旧房翻新", "老房改造": "旧房翻新",
    "厨卫翻新": "局部改造", "厨房改造": "局部改造", "卫生间改造": "局部改造", "厨卫改造": "局部改造",
    "七座suv": "SUV", "越野车": "SUV", "商务车": "MPV", "保姆车": "MPV",
    "重疾": "重疾险", "重大疾病保险": "重疾险", "重大疾病险": "重疾险",
    "百万医疗": "医疗险", "医疗保险": "医疗险", "防癌医疗险": "医疗险", "惠民保": "医疗险",
    "年金": "年金险", "养老年金": "年金险", "增额终身寿": "寿险", "终身寿险": "寿险", "定期寿险": "寿险",
    "意外保险": "意外险", "团体意外险": "意外险", "团意险": "意外险", "雇主责任险": "意外险",
    "教育年金": "教育金", "教育储蓄险": "教育金",
}

DEFAULT_COMPETITORS: list[str] = [
    # education
    "新东方", "好未来", "学而思", "达内", "黑马程序员", "千锋", "尚硅谷", "马士兵", "开课吧", "拉勾教育",
    "中公教育", "粉笔", "华图", "高顿", "尚德", "猿辅导", "作业帮", "火花思维", "斑马", "编程猫", "核桃编程",
    "网易有道", "腾讯课堂", "沪江", "网易云课堂", "樊登读书", "环球雅思", "启德", "新航道", "文都", "海文", "跨考",
    "东奥", "中华会计网校",
    "环球网校", "优路", "大立", "希赛", "光环国际", "社科赛斯", "厚大", "众合", "瑞达", "51Talk", "VIPKID",
    # SaaS
    "纷享销客", "销售易", "Salesforce", "用友", "金蝶", "钉钉", "微伴助手", "探马", "励销云", "八百客", "悟空CRM",
    "HubSpot", "Zoho", "简道云", "明道云", "飞书", "泛微", "致远", "SAP", "Oracle", "容联七陌", "天润融通", "尘锋",
    "管家婆", "秦丝", "有赞",
    # 装修
    "业之峰", "东易日盛", "土巴兔", "生活家", "爱空间", "齐家网", "圣都", "沪佳", "星杰", "金螳螂", "被窝家装",
    "欧派", "索菲亚", "尚品宅配", "志邦", "好莱客", "金牌橱柜", "我乐",
    # 汽车
    "比亚迪", "特斯拉", "理想汽车", "蔚来", "小鹏", "问界", "小米汽车", "吉利", "长安", "大众", "丰田", "本田",
    "零跑", "极氪", "哈弗", "奇瑞", "别克", "腾势", "宝马", "奔驰", "奥迪",
    # 保险
    "平安", "中国人寿", "太平洋保险", "泰康", "友邦", "新华保险", "众安", "水滴", "蚂蚁保", "人保",
]

DEFAULT_COMPETITOR_ALIASES: dict[str, str] = {
    "新东方在线": "新东方", "东方甄选": "新东方",
    "学而思网校": "学而思", "学而思培优": "学而思",
    "达内教育": "达内", "达内科技": "达内",
    "传智播客": "黑马程序员", "传智": "黑马程序员", "黑马": "黑马程序员", "传智教育": "黑马程序员",
    "千锋教育": "千锋", "马士兵教育": "马士兵",
    "中公": "中公教育", "中公网校": "中公教育",
    "粉笔教育": "粉笔", "粉笔公考": "粉笔", "粉笔app": "粉笔",
    "华图教育": "华图", "华图在线": "华图",
    "高顿教育": "高顿", "高顿财经": "高顿",
    "尚德机构": "尚德", "沪江网校": "沪江", "沪江日语": "沪江", "有道": "网易有道", "有道精品课": "网易有道",
    "斑马ai": "斑马", "斑马ai课": "斑马", "斑马英语": "斑马",
    "启德教育": "启德", "新航道英语": "新航道", "环球教育": "环球雅思",
    "文都考研": "文都", "万学海文": "海文", "海文考研": "海文", "跨考教育": "跨考",
    "东奥会计": "东奥", "东奥会计在线": "东奥", "正保会计网校": "中华会计网校", "会计网校": "中华会计网校",
    "优路教育": "优路", "大立教育": "大立", "希赛网": "希赛", "光环": "光环国际",
    "厚大法考": "厚大", "众合法考": "众合", "众合教育": "众合",
    "纷享": "纷享销客", "用友u8": "用友", "用友nc": "用友", "金蝶云": "金蝶", "金蝶云星空": "金蝶", "金蝶k3": "金蝶",
    "微伴": "微伴助手", "管家婆软件": "管家婆", "秦丝进销存": "秦丝", "探马scrm": "探马", "七陌": "容联七陌",
    "容联": "容联七陌", "尘锋scrm": "尘锋",
    "东易": "东易日盛", "欧派家居": "欧派", "索菲亚家居": "索菲亚", "志邦家居": "志邦", "生活家装饰": "生活家",
    "圣都整装": "圣都", "沪佳装饰": "沪佳", "爱空间装修": "爱空间",
    "比亚迪唐": "比亚迪", "比亚迪宋": "比亚迪", "比亚迪汉": "比亚迪", "海豹": "比亚迪", "model y": "特斯拉",
    "modely": "特斯拉", "model3": "特斯拉", "理想l6": "理想汽车", "理想l7": "理想汽车", "理想l8": "理想汽车",
    "理想l9": "理想汽车", "理想one": "理想汽车", "蔚来汽车": "蔚来", "小鹏汽车": "小鹏", "问界m7": "问界",
    "问界m9": "问界", "小米su7": "小米汽车", "小米yu7": "小米汽车", "零跑汽车": "零跑", "极氪001": "极氪",
    "哈弗h6": "哈弗", "哈佛h6": "哈弗", "长安cs75": "长安",
    "卡罗拉": "丰田", "凯美瑞": "丰田", "汉兰达": "丰田", "思域": "本田", "雅阁": "本田", "cr-v": "本田",
    "朗逸": "大众", "帕萨特": "大众", "途观": "大众", "gl8": "别克", "别克gl8": "别克", "腾势d9": "腾势",
    "d9": "腾势",
    "中国平安": "平安", "平安保险": "平安", "平安人寿": "平安", "国寿": "中国人寿", "太平洋": "太平洋保险",
    "太保": "太平洋保险", "泰康人寿": "泰康", "友邦保险": "友邦", "新华": "新华保险", "众安保险": "众安",
    "水滴保": "水滴", "支付宝": "蚂蚁保", "支付宝保险": "蚂蚁保", "中国人保": "人保",
}

DEFAULT_DECISION_ROLES: dict[str, str] = {
    # the customer decides
    "我自己定": SELF_DECIDES, "我说了算": SELF_DECIDES, "我自己就能定": SELF_DECIDES, "我自己决定": SELF_DECIDES,
    "我能做主": SELF_DECIDES, "我自己做主": SELF_DECIDES, "我拍板": SELF_DECIDES, "我自己拿主意": SELF_DECIDES,
    "我定就行": SELF_DECIDES, "我来定": SELF_DECIDES, "我就能定": SELF_DECIDES, "我一个人说了算": SELF_DECIDES,
    "不用问别人": SELF_DECIDES, "我自己就能决定": SELF_DECIDES, "我做主": SELF_DECIDES,
    # a boss or manager
    "老板": "老板", "领导": "老板", "总经理": "老板", "老总": "老板", "董事长": "老板", "总裁": "老板",
    "大老板": "老板", "上级": "老板", "董事会": "老板", "老板娘": "老板", "总监": "老板", "校长": "老板",
    "店长": "老板",
    # parents
    "家长": "家长", "孩子他爸": "家长", "孩子他妈": "家长", "孩子爸": "家长", "孩子妈": "家长", "孩子爸爸": "家长",
    "孩子妈妈": "家长", "我爸": "家长", "我妈": "家长", "我爸妈": "家长", "爸妈": "家长", "父母": "家长",
    "我爸爸": "家长", "我妈妈": "家长", "家里人": "家长", "家里老人": "家长",
    # a spouse
    "老公": "配偶", "老婆": "配偶", "爱人": "配偶", "媳妇": "配偶", "我先生": "配偶", "我太太": "配偶",
    "对象": "配偶", "我丈夫": "配偶", "我妻子": "配偶", "老伴": "配偶", "老伴儿": "配偶", "家里那位": "配偶",
    "另一半": "配偶", "孩子他娘": "配偶",
    # grown-up children
    "儿子": "子女", "女儿": "子女", "闺女": "子女", "孩子们": "子女", "孩子自己": "子女",
    # company functions
    "采购": "采购", "采购部": "采购", "采购部门": "采购",
    "财务": "财务", "财务部": "财务", "财务总监": "财务", "财务经理": "财务", "cfo": "财务",
    "人事": "人事", "hr": "人事", "人事部": "人事", "人力": "人事",
    "合伙人": "合伙人", "股东": "合伙人",
}


@dataclass(frozen=True)
class Lexicons:
    """The vocabularies one source's calls are read with.

    Every field has a realistic default, so `Lexicons()` works out of the box. Surface forms are
    matched case-insensitively; canonical names are reported as written here.
    """

    courses: list[str] = field(default_factory=lambda: list(DEFAULT_COURSES))
    course_aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_COURSE_ALIASES))
    competitors: list[str] = field(default_factory=lambda: list(DEFAULT_COMPETITORS))
    competitor_aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_COMPETITOR_ALIASES))
    decision_roles: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DECISION_ROLES))

    def merged(self, overrides: Mapping[str, Any]) -> Lexicons:
        """A copy with a source's overrides applied.

        Lists are extended (order kept, duplicates dropped) and mappings updated, because a source
        usually adds its own catalogue to the defaults. Name fields under `"replace"` to replace them
        instead, e.g. `{"courses": ["全屋定制"], "replace": ["courses"]}`, and list names under
        `"remove"` to drop them from every field, e.g. a dealer removing its own brand from the
        competitors. Unknown keys raise `ValueError` and values of the wrong shape `TypeError`, so a
        typo in a source's config is not silently ignored.
        """
        known = {f.name for f in fields(self)}
        for name in ("replace", "remove"):
            _check_shape(name, overrides.get(name, ()), mapping=False)
        replace_names = set(overrides.get("replace", ()))
        unknown = (set(overrides) - known - {"replace", "remove"}) | (replace_names - known)
        if unknown:
            raise ValueError(f"unknown lexicon keys: {sorted(unknown)}")
        changes: dict[str, Any] = {}
        for name in known & set(overrides):
            current, extra = getattr(self, name), overrides[name]
            _check_shape(name, extra, mapping=isinstance(current, dict))
            if isinstance(current, dict):
                changes[name] = dict(extra) if name in replace_names else {**current, **dict(extra)}
            else:
                base = [] if name in replace_names else current
                changes[name] = list(dict.fromkeys([*base, *extra]))
        result = replace(self, **changes)
        removed = set(overrides.get("remove", ()))
        return result._without(removed) if removed else result

    def _without(self, names: set[str]) -> Lexicons:
        folded = {n.casefold() for n in names}

        def keep(word: str) -> bool:
            return word.casefold() not in folded

        return replace(
            self,
            courses=[c for c in self.courses if keep(c)],
            course_aliases={a: c for a, c in self.course_aliases.items() if keep(a) and keep(c)},
            competitors=[c for c in self.competitors if keep(c)],
            competitor_aliases={a: c for a, c in self.competitor_aliases.items() if keep(a) and keep(c)},
            decision_roles={p: r for p, r in self.decision_roles.items() if keep(p)},
        )

    def course_terms(self) -> dict[str, str]:
        """Lower-cased surface form → canonical course, canonical names included."""
        return _terms(self.courses, self.course_aliases)

    def competitor_terms(self) -> dict[str, str]:
        """Lower-cased surface form → canonical competitor, canonical names included."""
        return _terms(self.competitors, self.competitor_aliases)

    def role_terms(self) -> dict[str, str]:
        """Lower-cased phrase → canonical decision role."""
        return {phrase.casefold(): role for phrase, role in self.decision_roles.items()}

    def canonical_competitor(self, name: str) -> str:
        """The canonical name for a competitor alias; unknown names come back unchanged."""
        return self.competitor_terms().get(name.strip().casefold(), name.strip())

    def canonical_course(self, name: str) -> str:
        """The canonical name for a course alias; unknown names come back unchanged."""
        return self.course_terms().get(name.strip().casefold(), name.strip())

    def key(self) -> tuple[tuple[tuple[str, str], ...], ...]:
        """A hashable fingerprint, for caching per-lexicon work (the dataclass holds lists)."""
        return (
            tuple(sorted(self.course_terms().items())),
            tuple(sorted(self.competitor_terms().items())),
            tuple(sorted(self.role_terms().items())),
        )


def _check_shape(name: str, value: Any, *, mapping: bool) -> None:
    if mapping:
        ok = isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        expected = "a mapping of strings to strings"
    else:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        expected = "a list of strings"
    if not ok:
        raise TypeError(f"lexicon {name!r} must be {expected}, got {type(value).__name__}")


def _terms(canonical: list[str], aliases: Mapping[str, str]) -> dict[str, str]:
    terms = {name.casefold(): name for name in canonical}
    for alias, name in aliases.items():
        terms.setdefault(alias.casefold(), name)
    return terms
